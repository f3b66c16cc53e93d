// A NetworkPolicy truth table from an evaluator that is not ours: the policy matcher of cyclonus (the
// network-policy-api project's policy-assistant grew from it; its own module is not on the Go module
// proxy). Reads one JSON document on stdin, {"policies": [NetworkPolicy...], "traffic": [Traffic...]}
// (Traffic as cyclonus's matcher.Traffic: Source/Destination {Internal {PodLabels, NamespaceLabels,
// Namespace}, IP}, ResolvedPort, ResolvedPortName, Protocol), and writes one answer per traffic:
// [{"allowed", "ingress", "egress"}].
// Ref: https://github.com/mattfenwick/cyclonus/blob/v0.5.6/pkg/matcher/policy.go (IsTrafficAllowed)
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/mattfenwick/cyclonus/pkg/matcher"
	networkingv1 "k8s.io/api/networking/v1"
)

type request struct {
	Policies []*networkingv1.NetworkPolicy `json:"policies"`
	Traffic  []*matcher.Traffic            `json:"traffic"`
}

type verdict struct {
	Allowed bool `json:"allowed"`
	Ingress bool `json:"ingress"`
	Egress  bool `json:"egress"`
}

func main() {
	var req request
	if err := json.NewDecoder(os.Stdin).Decode(&req); err != nil {
		fmt.Fprintln(os.Stderr, "request:", err)
		os.Exit(2)
	}
	policy := matcher.BuildNetworkPolicies(false, req.Policies)
	answers := make([]verdict, 0, len(req.Traffic))
	for _, traffic := range req.Traffic {
		result := policy.IsTrafficAllowed(traffic)
		answers = append(answers, verdict{Allowed: result.IsAllowed(), Ingress: result.Ingress.IsAllowed(), Egress: result.Egress.IsAllowed()})
	}
	if err := json.NewEncoder(os.Stdout).Encode(answers); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
