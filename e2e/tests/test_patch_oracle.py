"""The pack never passes a pod_spec patch whose job pod, as the runner really builds it, is weaker.

The oracle is not ours: e2e/patch_oracle is the runner's doPodSpecMerge with the libraries and
versions gitlab-runner v18.9.0's go.mod pins (sigs.k8s.io/yaml, evanphx/json-patch, k8s.io/apimachinery
strategic merge, k8s.io/api), and Pod Security Admission (k8s.io/pod-security-admission at the pinned
Kubernetes version) judging the result. A property-based generator (hypothesis) writes patches that try
the runner's reading against the pack's: other spellings of every key on the path (case, U+017F for
's', the Kelvin sign for 'k'), repeated keys, YAML 1.1 booleans, each patch type, each container list,
the pod level. For every patch the pack passes (over its gRPC protocol, beside the stack's own
resources), the oracle's pod must be admitted at the job namespace's PSA level and carry no seccomp or
AppArmor profile, on any container or the pod, that the stack's own job pod does not.
"""

from __future__ import annotations

import copy
import json
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from e2e.patch_oracle import PatchOracle
from verify.harness import ROOT, run_stack
from verify.policy_client import PolicyPack, ResourceInput

sys.path.insert(0, str(ROOT / "policies"))
from pod_spec_patches import job_pod

RELEASE = "kubernetes:helm.sh/v3:Release"
PSA_VERSION = "v1.33"
JOB_LEVEL = "baseline"  # the job namespace of both stacks below (baseline and confined modes)


@dataclass(frozen=True)
class Raw:
    """A scalar written into the YAML exactly as given (so `y` stays a plain `y`)."""

    text: str


# --- the generator ----------------------------------------------------------------------------------

KELVIN, LONG_S = "\u212a", "\u017f"


def spellings(key: str) -> st.SearchStrategy[str]:
    variants = {key, key.lower(), key.upper(), key[:1].upper() + key[1:], key.swapcase()}
    if "s" in key:
        variants.add(key.replace("s", LONG_S, 1))
    if "k" in key:
        variants.add(key.replace("k", KELVIN, 1))
    return st.sampled_from(sorted(variants))


TRUE = st.sampled_from([Raw("true"), Raw("y"), Raw("Y"), Raw("yes"), Raw("on"), Raw("True")])

# (path below the pod spec or the container, weakening value); containers get a name (and an image).
POD_LEVEL = [
    (["hostPID"], TRUE),
    (["hostIPC"], TRUE),
    (["hostNetwork"], TRUE),
    (["securityContext", "seccompProfile"], st.just({"type": Raw("Unconfined")})),
    (["securityContext", "seccompProfile"], st.just({"type": Raw("Localhost"), "localhostProfile": Raw("other.json")})),
    (["securityContext", "appArmorProfile"], st.just({"type": Raw("Unconfined")})),
]
CONTAINER_LEVEL = [
    (["securityContext", "privileged"], TRUE),
    (["securityContext", "capabilities", "add"], st.just([Raw("SYS_ADMIN")])),
    (["securityContext", "seccompProfile"], st.just({"type": Raw("Unconfined")})),
    (["securityContext", "seccompProfile"], st.just({"type": Raw("Localhost"), "localhostProfile": Raw("other.json")})),
    (["securityContext", "appArmorProfile"], st.just({"type": Raw("Unconfined")})),
    (["securityContext", "procMount"], st.just(Raw("Unmasked"))),
]
LISTS = ["containers", "initContainers", "ephemeralContainers"]
NAMES = ["build", "helper", "init-permissions", "sidecar"]


def nest(keys: list[str], value: Any) -> Any:
    for key in reversed(keys):
        value = [(key, value)]  # a mapping as (key, value) pairs: keys may repeat
    return value


@st.composite
def weakening(draw: st.DrawFn) -> tuple[list[str], Any]:
    """(spelled path from the pod spec, value as pairs/lists/Raw)."""
    if draw(st.booleans()):
        path, values = draw(st.sampled_from(POD_LEVEL))
        spelled = [draw(spellings(k)) for k in path]
        return spelled, draw(values)
    path, values = draw(st.sampled_from(CONTAINER_LEVEL))
    listed = draw(st.sampled_from(LISTS))
    name = draw(st.sampled_from(NAMES))
    spelled = [draw(spellings(k)) for k in path]
    entry = [("name", Raw(name))]
    if name == "sidecar" or listed == "ephemeralContainers":
        entry.append(("image", Raw("busybox")))
    entry += nest(spelled, draw(values))
    return [draw(spellings(listed))], [entry]


def render_yaml(value: Any, indent: int = 0) -> str:
    pad = " " * indent
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, dict):
        value = list(value.items())
    if isinstance(value, list) and value and isinstance(value[0], tuple):
        lines = []
        for key, item in value:
            if isinstance(item, Raw):
                lines.append(f"{pad}{key}: {item.text}")
            else:
                lines.append(f"{pad}{key}:\n{render_yaml(item, indent + 2)}")
        return "\n".join(lines)
    if isinstance(value, list):
        lines = []
        for item in value:
            body = render_yaml(item, indent + 2)
            lines.append(f"{pad}- {body.lstrip()}" if not isinstance(item, Raw) else f"{pad}- {item.text}")
        return "\n".join(lines)
    raise TypeError(value)


def to_json(value: Any) -> Any:
    if isinstance(value, str):
        return value
    if isinstance(value, Raw):
        return json.loads(value.text) if value.text in ("true", "false") or value.text.isdigit() else value.text
    if isinstance(value, dict):
        value = list(value.items())
    if isinstance(value, list) and value and isinstance(value[0], tuple):
        return {key: to_json(item) for key, item in value}  # JSON text written by json.dumps: no repeats
    return [to_json(item) for item in value]


# Harmless edits in the API's own spelling: the pack passes these, so the property is also exercised on
# patches it lets through (and the oracle confirms they weaken nothing).
HARMLESS: list[tuple[list[str], st.SearchStrategy[Any]]] = [
    (["nodeSelector"], st.just([("pool", Raw("builds"))])),
    (["terminationGracePeriodSeconds"], st.just(Raw("30"))),
    (["containers"], st.just([[("name", Raw("build")), ("resources", [("limits", [("memory", Raw("8Gi"))])])]])),
]
PASSED: list[dict[str, str]] = []


@st.composite
def patches(draw: st.DrawFn) -> dict[str, str]:
    value: Any
    if draw(st.integers(0, 4)) == 0:
        path, values = draw(st.sampled_from(HARMLESS))
        value = draw(values)
    else:
        path, value = draw(weakening())
    patch_type = draw(st.sampled_from(["strategic", "merge", "json"]))
    if patch_type == "json":
        if path[0].casefold() in {name.casefold() for name in LISTS}:  # a container entry: appended to the list
            ops = [{"op": "add", "path": f"/{path[0]}/-", "value": to_json(value[0])}]
        else:
            ops = [{"op": "add", "path": "/" + "/".join(path), "value": to_json(value)}]
        return {"patch_type": "json", "patch": json.dumps(ops, ensure_ascii=draw(st.booleans()))}
    document = nest(path, value)
    if draw(st.booleans()):  # a harmless spelling of the first key first: the later one wins in Go
        document = [(path[0], [] if isinstance(value, list) else Raw("false") if isinstance(value, Raw) else [("x", Raw("1"))]), *document]
    return {"patch_type": patch_type, "patch": render_yaml(document)}


# --- the property -----------------------------------------------------------------------------------


def profiles(spec: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Seccomp and AppArmor profile of the pod and of every container, by name."""
    found = {
        "(pod)": ((spec.get("securityContext") or {}).get("seccompProfile"), (spec.get("securityContext") or {}).get("appArmorProfile"))
    }
    for listed in LISTS:
        for container in spec.get(listed) or []:
            context = container.get("securityContext") or {}
            found[f"{listed}/{container.get('name')}"] = (context.get("seccompProfile"), context.get("appArmorProfile"))
    return found


def weaker_profiles(effective: dict[str, Any], own: dict[str, Any]) -> list[str]:
    """Unconfined or Localhost profiles the stack's own job pod does not have at that place."""
    problems = []
    own_profiles = profiles(own)
    for where, pair in profiles(effective).items():
        for index, profile in enumerate(pair):
            if profile and profile.get("type") in ("Unconfined", "Localhost") and profile != own_profiles.get(where, (None, None))[index]:
                problems.append(f"{where}: {profile}")
    return problems


@dataclass
class Stack:
    resources: list[ResourceInput]
    base: dict[str, Any]
    annotations: dict[str, str]
    own_patches: list[dict[str, str]]
    own_pod: dict[str, Any]


@pytest.fixture(scope="module")
def oracle() -> Iterator[PatchOracle]:
    with PatchOracle() as running:
        yield running


@pytest.fixture(scope="module")
def pack() -> Iterator[PolicyPack]:
    with PolicyPack() as running:
        yield running


def load(name: str, oracle: PatchOracle) -> Stack:
    resources = [ResourceInput(r.type, r.name, r.urn, r.inputs) for r in run_stack(name).resources if r.custom]
    (release,) = [r for r in resources if r.type == RELEASE]
    kube = tomllib.loads(release.props["values"]["runners"]["config"])["runners"][0]["kubernetes"]
    base, meta = job_pod(kube)
    own_patches = [{"patch_type": p.get("patch_type", "strategic"), "patch": p["patch"]} for p in kube.get("pod_spec") or []]
    own = oracle.effective_pod(base, meta["annotations"], own_patches, JOB_LEVEL, PSA_VERSION)
    assert own.get("allowed") is True, own  # the stack's own job pod is admitted
    return Stack(resources, base, meta["annotations"], own_patches, own["spec"])


@pytest.fixture(scope="module")
def stacks(oracle: PatchOracle) -> dict[str, Stack]:
    return {name: load(name, oracle) for name in ("dev", "local")}  # baseline and confined job modes


def pack_passes(pack: PolicyPack, stack: Stack, patch: dict[str, str]) -> bool:
    table = (
        f'\n[[runners.kubernetes.pod_spec]]\nname = "probe"\npatch_type = "{patch["patch_type"]}"\npatch = {json.dumps(patch["patch"])}\n'
    )
    resources = []
    for r in stack.resources:
        props = copy.deepcopy(dict(r.props))
        if r.type == RELEASE:
            props["values"]["runners"]["config"] += table
        resources.append(ResourceInput(r.type, r.name, r.urn, props))
    return not [d for d in pack.analyze_all(resources) if d.level == "mandatory"]


@pytest.mark.parametrize("stack_name", ["dev", "local"])
@settings(max_examples=120, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(patch=patches())
def test_no_patch_the_pack_passes_weakens_the_job_pod(
    pack: PolicyPack, oracle: PatchOracle, stacks: dict[str, Stack], stack_name: str, patch: dict[str, str]
) -> None:
    stack = stacks[stack_name]
    effective = oracle.effective_pod(stack.base, stack.annotations, [*stack.own_patches, patch], JOB_LEVEL, PSA_VERSION)
    if "error" in effective or not pack_passes(pack, stack, patch):
        return  # the runner fails the job, or the pack refuses: nothing weaker runs
    PASSED.append(patch)
    assert effective["allowed"], f"the pack passed {patch!r}; PSA {JOB_LEVEL} forbids the runner's pod: {effective['forbidden']}"
    assert weaker_profiles(effective["spec"], stack.own_pod) == [], f"the pack passed {patch!r}"


def test_the_generator_reaches_pods_psa_forbids(oracle: PatchOracle, stacks: dict[str, Stack]) -> None:
    """The property above is not vacuous: canonical patches of the generator's kind do weaken the pod
    the runner builds, and the pack's refusal is what stops them."""
    stack = stacks["dev"]
    for patch in ({"patch_type": "strategic", "patch": "hostpid: y"}, {"patch_type": "merge", "patch": f"hostNetwor{KELVIN}: true"}):
        effective = oracle.effective_pod(stack.base, stack.annotations, [*stack.own_patches, patch], JOB_LEVEL, PSA_VERSION)
        assert effective.get("allowed") is False, effective


def test_the_property_saw_patches_the_pack_passes() -> None:
    """Runs after the property (file order): it judged some patches the pack let through, not only refusals."""
    assert PASSED, "no generated patch passed the pack: the property above only ever saw refusals"
