// The applets of a dynamically linked BusyBox whose C library is newer than the host's: each applet is a
// symlink to this launcher, which runs `<loader> --library-path <libs> busybox <applet> args...` with the
// loader and libraries unpacked beside it (e2e/busybox.py). Debian's static BusyBox cannot stand in for
// the rootless image's: it runs its own applets before anything on PATH (FEATURE_PREFER_APPLETS).
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

func main() {
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "busybox-launch:", err)
		os.Exit(127)
	}
	home := filepath.Dir(filepath.Dir(self)) // <home>/bin/busybox-launch
	libs := filepath.Join(home, "root", "usr", "lib", "x86_64-linux-gnu")
	loader := filepath.Join(libs, "ld-linux-x86-64.so.2")
	busybox := filepath.Join(home, "root", "usr", "bin", "busybox")
	args := append([]string{loader, "--library-path", libs, busybox, filepath.Base(os.Args[0])}, os.Args[1:]...)
	if err := syscall.Exec(loader, args, os.Environ()); err != nil {
		fmt.Fprintln(os.Stderr, "busybox-launch:", err)
		os.Exit(127)
	}
}
