"""BusyBox as the rootless BuildKit image has it: the template's script runs on these applets there.

moby/buildkit v0.25.1's rootless image is Alpine 3.22 (its Dockerfile: ALPINE_VERSION=3.22; the
rootless stage adds fuse3, fuse-overlayfs, git, openssh, openssl, pigz, shadow-uidmap, xz), whose
shell and core tools are BusyBox 1.37.0, one symlink per applet, found through PATH. The same upstream
release comes from Debian trixie's `busybox` package, with trixie's C library beside it (it needs
glibc 2.38), fetched and checked like the AppArmor parsers (signed InRelease, index and package
SHA-256) into the tool cache; `e2e/busybox_launch` (standard library only) runs each applet through
that library's loader. Two Debian builds do not stand in: bookworm's busybox-static 1.35 (installed by
`make build-host`) crashes on `wget -T` (SIGSEGV), and any busybox-static runs its own applets before
anything on PATH (FEATURE_PREFER_APPLETS), which Alpine's does not.

    python -m e2e.busybox   # fetch, print the version and the applet folder
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from e2e.apparmor import KEYRING, FetchError, debian_index, debian_unpack
from e2e.tools import ROOT, cache_root

SUITE = "trixie"
VERSION = "1:1.37.0-6+b9"  # the pin: Debian trixie's busybox, BusyBox 1.37.0 as in Alpine 3.22


def home() -> Path:
    return cache_root() / f"busybox-{VERSION.split(':', 1)[-1]}"


def applets() -> Path:
    """A folder of applet symlinks (sh, wget, sed, ...) to the launcher, made once."""
    folder = home() / "applets"
    if (folder / "sh").exists():
        return folder
    if not KEYRING.is_file():
        raise FetchError(f"{KEYRING} is missing (Debian's debian-archive-keyring package)")
    print(f">> fetching busybox {VERSION} and its C library from Debian {SUITE}", file=sys.stderr, flush=True)
    staging = home().with_name(home().name + ".partial")
    subprocess.run(["rm", "-rf", str(staging)], check=True)
    index = debian_index(SUITE)
    debian_unpack(SUITE, index, "busybox", VERSION, staging / "root")
    debian_unpack(SUITE, index, "libc6", None, staging / "root")
    (staging / "bin").mkdir()
    env = {**os.environ, "CGO_ENABLED": "0", "GOTOOLCHAIN": "local", "GO111MODULE": "off"}
    subprocess.run(
        ["go", "build", "-trimpath", "-o", str(staging / "bin" / "busybox-launch"), str(ROOT / "e2e" / "busybox_launch" / "main.go")],
        check=True,
        env=env,
        timeout=600,
    )
    libs = staging / "root" / "usr" / "lib" / "x86_64-linux-gnu"
    listed = subprocess.run(
        [str(libs / "ld-linux-x86-64.so.2"), "--library-path", str(libs), str(staging / "root" / "usr" / "bin" / "busybox"), "--list"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.split()
    (staging / "applets").mkdir()
    for name in [*listed, "busybox"]:
        (staging / "applets" / name).symlink_to(Path("..") / "bin" / "busybox-launch")  # relative: the folder may be copied
    os.replace(staging, home())
    return folder


def copy_to(folder: Path) -> Path:
    """The whole BusyBox (launcher, libraries, applets) under `folder`, readable and runnable by every
    user (an unprivileged job user cannot enter the cache under root's HOME); copied once; returns its
    applet folder."""
    target = folder / "busybox"
    if not target.exists():
        applets()
        shutil.copytree(home(), target, symlinks=True)
        for item in [target, *target.rglob("*")]:
            if not item.is_symlink():
                mode = item.stat().st_mode
                item.chmod(mode | (0o555 if item.is_dir() or mode & 0o100 else 0o444))
    return target / "applets"


def version() -> str:
    result = subprocess.run([str(applets() / "busybox")], capture_output=True, text=True, timeout=30)
    return (result.stdout or result.stderr).splitlines()[0]


if __name__ == "__main__":
    print(f"{version()}  ({applets()})")
