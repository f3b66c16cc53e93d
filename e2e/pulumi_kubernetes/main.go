// The Kubernetes provider plugin, built from its Go module at the pinned commit.
//
// Upstream's cmd/pulumi-resource-kubernetes/main.go embeds two files its Makefile generates
// (schema-embed.json, terraform-mapping-embed.json); e2e/tools.py copies the module's own
// schema.json and terraform-mapping.json under those names beside this file, so this main is
// upstream's, with the version set by the linker (-X main.version).
// Ref: https://github.com/pulumi/pulumi-kubernetes/blob/v4.25.0/provider/cmd/pulumi-resource-kubernetes/main.go
package main

import (
	_ "embed"

	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/provider"
)

var version = "0.0.0-dev"

//go:embed schema-embed.json
var pulumiSchema []byte

//go:embed terraform-mapping-embed.json
var terraformMapping []byte

func main() {
	provider.Serve("kubernetes", version, pulumiSchema, terraformMapping)
}
