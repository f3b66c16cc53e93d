// The job pod the runner builds from its pod_spec patches, decoded by the runner's own libraries, and
// Pod Security Admission's verdict on it: the oracle the pack's patch reader is tested against.
//
// One JSON request per stdin line: {"spec": <the job pod spec before patches>, "annotations": {...},
// "patches": [{"patch_type": "strategic|merge|json", "patch": "<YAML or JSON text>"}],
// "level": "baseline", "version": "v1.33"}. One JSON answer per line: {"error": "..."} when the runner
// would fail the job, else {"spec": <the effective pod spec>, "allowed": bool, "forbidden": "..."}.
//
// doPodSpecMerge and applyPodSpecMerge are the runner's (v18.9.0), restated with the same libraries at
// the versions its go.mod pins (sigs.k8s.io/yaml v1.6.0, evanphx/json-patch v5.9.11+incompatible,
// k8s.io/api and k8s.io/apimachinery v0.35.0); PSA is k8s.io/pod-security-admission at the pinned
// Kubernetes version.
// Ref: https://gitlab.com/gitlab-org/gitlab-runner/-/blob/v18.9.0/executors/kubernetes/kubernetes.go (applyPodSpecMerge, doPodSpecMerge)
// Ref: https://gitlab.com/gitlab-org/gitlab-runner/-/blob/v18.9.0/common/config.go (KubernetesPodSpec.PodSpecPatch)
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"

	jsonpatch "github.com/evanphx/json-patch"
	api "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	psaapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
	"sigs.k8s.io/yaml"
)

type patch struct {
	PatchType string `json:"patch_type"`
	Patch     string `json:"patch"`
}

type request struct {
	Spec        json.RawMessage   `json:"spec"`
	Annotations map[string]string `json:"annotations"`
	Patches     []patch           `json:"patches"`
	Level       string            `json:"level"`
	Version     string            `json:"version"`
}

type answer struct {
	Error     string       `json:"error,omitempty"`
	Spec      *api.PodSpec `json:"spec,omitempty"`
	Allowed   bool         `json:"allowed"`
	Forbidden string       `json:"forbidden,omitempty"`
}

// As the runner's KubernetesPodSpec.PodSpecPatch: YAML (or JSON) to JSON; an empty type is strategic.
func podSpecPatch(p patch) ([]byte, string, error) {
	patchType := p.PatchType
	if patchType == "" {
		patchType = "strategic"
	}
	data, err := yaml.YAMLToJSON([]byte(p.Patch))
	return data, patchType, err
}

// As the runner's doPodSpecMerge.
func doPodSpecMerge(original []byte, p patch) ([]byte, error) {
	patchBytes, patchType, err := podSpecPatch(p)
	if err != nil {
		return nil, err
	}
	switch patchType {
	case "json":
		decoded, err := jsonpatch.DecodePatch(patchBytes)
		if err != nil {
			return nil, err
		}
		return decoded.Apply(original)
	case "merge":
		return jsonpatch.MergePatch(original, patchBytes)
	case "strategic":
		return strategicpatch.StrategicMergePatch(original, patchBytes, api.PodSpec{})
	default:
		return nil, fmt.Errorf("unsupported patch type %v", patchType)
	}
}

func evaluate(req request) answer {
	var base api.PodSpec
	if err := json.Unmarshal(req.Spec, &base); err != nil {
		return answer{Error: "base spec: " + err.Error()}
	}
	// As applyPodSpecMerge: marshal the built pod, apply each patch, unmarshal into api.PodSpec.
	data, err := json.Marshal(&base)
	if err != nil {
		return answer{Error: err.Error()}
	}
	for _, p := range req.Patches {
		if data, err = doPodSpecMerge(data, p); err != nil {
			return answer{Error: err.Error()}
		}
	}
	var spec api.PodSpec
	if err := json.Unmarshal(data, &spec); err != nil {
		return answer{Error: err.Error()}
	}
	level, err := psaapi.ParseLevel(req.Level)
	if err != nil {
		return answer{Error: err.Error()}
	}
	version, err := psaapi.ParseVersion(req.Version)
	if err != nil {
		return answer{Error: err.Error()}
	}
	evaluator, err := policy.NewEvaluator(policy.DefaultChecks())
	if err != nil {
		return answer{Error: err.Error()}
	}
	meta := metav1.ObjectMeta{Annotations: req.Annotations}
	result := policy.AggregateCheckResults(evaluator.EvaluatePod(psaapi.LevelVersion{Level: level, Version: version}, &meta, &spec))
	return answer{Spec: &spec, Allowed: result.Allowed, Forbidden: result.ForbiddenDetail()}
}

func main() {
	scanner := bufio.NewScanner(os.Stdin)
	scanner.Buffer(make([]byte, 1<<20), 16<<20)
	out := json.NewEncoder(os.Stdout)
	for scanner.Scan() {
		var req request
		var reply answer
		if err := json.Unmarshal(scanner.Bytes(), &req); err != nil {
			reply = answer{Error: "request: " + err.Error()}
		} else {
			reply = evaluate(req)
		}
		if err := out.Encode(reply); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	if err := scanner.Err(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
