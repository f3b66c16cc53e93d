// Command seccompgen prints the seccomp profile containerd gives a container (RuntimeDefault in a
// Kubernetes pod on containerd) for the capability set named on the command line, as OCI JSON.
//
// Ref: https://github.com/containerd/containerd/blob/v2.1.4/contrib/seccomp/seccomp_default.go
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/containerd/containerd/v2/contrib/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: seccompgen CAP_CHOWN,CAP_SETUID,...")
		os.Exit(2)
	}
	capabilities := strings.Split(os.Args[1], ",")
	spec := &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{
		Bounding: capabilities, Effective: capabilities, Permitted: capabilities,
	}}}
	encoder := json.NewEncoder(os.Stdout)
	encoder.SetIndent("", "  ")
	if err := encoder.Encode(seccomp.DefaultProfile(spec)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
