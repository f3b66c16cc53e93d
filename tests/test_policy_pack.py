"""The policy pack over its real gRPC protocol, spawned as the Pulumi CLI spawns it.

Each policy: a compliant baseline passes; changing one property produces exactly the expected
policy names at the expected enforcement level.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import make_config

from verify.harness import ProgramRun, run_program, run_stack
from verify.policy_client import UNKNOWN, Diagnostic, PolicyPack, ResourceInput

pytestmark = pytest.mark.xdist_group("policy-pack")

BASELINE_POLICIES = [
    "kubernetes-pod-privileged",
    "kubernetes-pod-host-namespaces",
    "kubernetes-pod-host-path",
    "kubernetes-pod-host-ports",
    "kubernetes-pod-capabilities-baseline",
    "kubernetes-pod-proc-mount",
    "kubernetes-pod-selinux",
    "kubernetes-pod-apparmor",
    "kubernetes-pod-seccomp-baseline",
    "kubernetes-pod-sysctls",
    "kubernetes-pod-windows-host-process",
]
RESTRICTED_POLICIES = [
    "kubernetes-pod-volume-types",
    "kubernetes-pod-privilege-escalation",
    "kubernetes-pod-run-as-non-root",
    "kubernetes-pod-run-as-user",
    "kubernetes-pod-seccomp-restricted",
    "kubernetes-pod-capabilities-restricted",
]
OTHER_MANDATORY = [
    "gitlab-runner-privileged",
    "gitlab-runner-privilege-escalation",
    "gitlab-runner-capabilities",
    "gitlab-runner-overwrites",
    "gitlab-runner-host-volumes",
    "gitlab-runner-config-understood",
    "gitlab-runner-pod-spec-patches",
    "gitlab-runner-manager-restricted",
    "gitlab-runner-only-through-the-release",
    "gitlab-runner-unconfined-profiles",
    "gitlab-runner-localhost-profiles",
    "helm-release-allow-listed",
    "gitlab-runner-values-allow-listed",
    "gitlab-runner-namespaces",
    "kubernetes-namespace-psa-labels",
    "kubernetes-namespace-privileged-acknowledged",
    "kubernetes-namespace-job-security-marks",
    "kubernetes-rbac-no-wildcards",
    "kubernetes-rbac-no-cluster-admin",
    "kubernetes-workload-kind-understood",
    "kubernetes-pod-localhost-profiles",
    "kubernetes-job-egress-blocks-metadata",
    "kubernetes-job-deny-ingress",
    "warm-builders-as-designed",
    "gitlab-credential-variables-protected",
    "aws-ecr-scan-on-push",
    "aws-ecr-encryption",
    "aws-ecr-immutable-tags",
    "aws-ecr-lifecycle-policy",
    "aws-ecr-resource-policies",
    "aws-iam-no-wildcard-actions",
    "aws-iam-no-wildcard-resources",
    "aws-iam-no-admin",
    "aws-iam-attachments-allow-listed",
    "aws-iam-oidc-trust-sub",
]
OTHER_ADVISORY = ["gitlab-runner-buildkit-needs"]


def test_analyzer_info_lists_every_policy_with_its_level(pack: PolicyPack) -> None:
    info = pack.info()
    assert info.name == "gitlab-buildkit-runner"
    expected = {
        **{p: "mandatory" for p in BASELINE_POLICIES + OTHER_MANDATORY},
        **{p: "advisory" for p in RESTRICTED_POLICIES + OTHER_ADVISORY},
    }
    assert pack.policy_levels() == expected
    for policy in info.policies:
        assert policy.description and policy.remediation_steps, policy.name


# --- Pod Security controls over every workload kind ---------------------------------------------

COMPLIANT_POD: dict[str, Any] = {
    "metadata": {"labels": {"app": "x"}},
    "spec": {
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [
            {
                "name": "app",
                "image": "registry.example.com/app:1.0",
                "ports": [{"containerPort": 8080}],
                "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
            }
        ],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
    },
}


def wrap(kind: str, pod: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The pod template at the place each workload kind keeps it."""
    template = {"metadata": pod["metadata"], "spec": pod["spec"]}
    selector = {"matchLabels": {"app": "x"}}
    bodies: dict[str, tuple[str, str, dict[str, Any]]] = {
        "Pod": ("core/v1", "v1", {"metadata": {"name": "p", **pod["metadata"]}, "spec": pod["spec"]}),
        "PodTemplate": ("core/v1", "v1", {"metadata": {"name": "t"}, "template": template}),
        "ReplicationController": ("core/v1", "v1", {"metadata": {"name": "rc"}, "spec": {"selector": {"app": "x"}, "template": template}}),
        "Deployment": ("apps/v1", "apps/v1", {"metadata": {"name": "d"}, "spec": {"selector": selector, "template": template}}),
        "StatefulSet": (
            "apps/v1",
            "apps/v1",
            {"metadata": {"name": "s"}, "spec": {"selector": selector, "serviceName": "s", "template": template}},
        ),
        "DaemonSet": ("apps/v1", "apps/v1", {"metadata": {"name": "ds"}, "spec": {"selector": selector, "template": template}}),
        "ReplicaSet": ("apps/v1", "apps/v1", {"metadata": {"name": "rs"}, "spec": {"selector": selector, "template": template}}),
        "Job": ("batch/v1", "batch/v1", {"metadata": {"name": "j"}, "spec": {"template": template}}),
        "CronJob": (
            "batch/v1",
            "batch/v1",
            {"metadata": {"name": "cj"}, "spec": {"schedule": "@daily", "jobTemplate": {"spec": {"template": template}}}},
        ),
    }
    group, api_version, body = bodies[kind]
    return f"kubernetes:{group}:{kind}", {"apiVersion": api_version, "kind": kind, **body}


WORKLOAD_KINDS = ["Pod", "PodTemplate", "ReplicationController", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob"]


def first(pod: dict[str, Any]) -> dict[str, Any]:
    return pod["spec"]["containers"][0]["securityContext"]


Mutation = Callable[[dict[str, Any]], None]
POD_MUTATIONS: list[tuple[str, Mutation, set[str]]] = [
    ("privileged", lambda p: first(p).update(privileged=True), {"kubernetes-pod-privileged"}),
    ("hostNetwork", lambda p: p["spec"].update(hostNetwork=True), {"kubernetes-pod-host-namespaces"}),
    ("hostPID", lambda p: p["spec"].update(hostPID=True), {"kubernetes-pod-host-namespaces"}),
    ("hostIPC", lambda p: p["spec"].update(hostIPC=True), {"kubernetes-pod-host-namespaces"}),
    (
        "hostPath",
        lambda p: p["spec"]["volumes"].append({"name": "h", "hostPath": {"path": "/"}}),
        {"kubernetes-pod-host-path", "kubernetes-pod-volume-types"},
    ),
    ("hostPort", lambda p: p["spec"]["containers"][0]["ports"][0].update(hostPort=8080), {"kubernetes-pod-host-ports"}),
    (
        "add SYS_ADMIN",
        lambda p: first(p)["capabilities"].update(add=["SYS_ADMIN"]),
        {"kubernetes-pod-capabilities-baseline", "kubernetes-pod-capabilities-restricted"},
    ),
    ("add CHOWN", lambda p: first(p)["capabilities"].update(add=["CHOWN"]), {"kubernetes-pod-capabilities-restricted"}),
    ("procMount", lambda p: first(p).update(procMount="Unmasked"), {"kubernetes-pod-proc-mount"}),
    ("selinux type", lambda p: first(p).update(seLinuxOptions={"type": "spc_t"}), {"kubernetes-pod-selinux"}),
    ("selinux user", lambda p: p["spec"]["securityContext"].update(seLinuxOptions={"user": "root"}), {"kubernetes-pod-selinux"}),
    (
        "apparmor annotation",
        lambda p: p["metadata"].update(annotations={"container.apparmor.security.beta.kubernetes.io/app": "unconfined"}),
        {"kubernetes-pod-apparmor"},
    ),
    ("apparmor field", lambda p: first(p).update(appArmorProfile={"type": "Unconfined"}), {"kubernetes-pod-apparmor"}),
    (
        "seccomp container",
        lambda p: first(p).update(seccompProfile={"type": "Unconfined"}),
        {"kubernetes-pod-seccomp-baseline", "kubernetes-pod-seccomp-restricted"},
    ),
    (
        "seccomp pod",
        lambda p: p["spec"]["securityContext"].update(seccompProfile={"type": "Unconfined"}),
        {"kubernetes-pod-seccomp-baseline", "kubernetes-pod-seccomp-restricted"},
    ),
    (
        "sysctl",
        lambda p: p["spec"]["securityContext"].update(sysctls=[{"name": "kernel.msgmax", "value": "1"}]),
        {"kubernetes-pod-sysctls"},
    ),
    ("hostProcess", lambda p: first(p).update(windowsOptions={"hostProcess": True}), {"kubernetes-pod-windows-host-process"}),
    (
        "nfs volume",
        lambda p: p["spec"]["volumes"].append({"name": "n", "nfs": {"server": "s", "path": "/"}}),
        {"kubernetes-pod-volume-types"},
    ),
    ("escalation", lambda p: first(p).update(allowPrivilegeEscalation=True), {"kubernetes-pod-privilege-escalation"}),
    ("runAsNonRoot false", lambda p: first(p).update(runAsNonRoot=False), {"kubernetes-pod-run-as-non-root"}),
    ("runAsUser 0", lambda p: first(p).update(runAsUser=0), {"kubernetes-pod-run-as-user"}),
    ("no seccomp", lambda p: p["spec"]["securityContext"].pop("seccompProfile"), {"kubernetes-pod-seccomp-restricted"}),
    ("no drop ALL", lambda p: first(p)["capabilities"].update(drop=["NET_RAW"]), {"kubernetes-pod-capabilities-restricted"}),
    (
        "privileged initContainer",
        lambda p: p["spec"].update(
            initContainers=[
                {**copy.deepcopy(p["spec"]["containers"][0]), "name": "init", "securityContext": {**first(p), "privileged": True}}
            ]
        ),
        {"kubernetes-pod-privileged"},
    ),
    (
        "privileged ephemeralContainer",
        lambda p: p["spec"].update(
            ephemeralContainers=[{"name": "debug", "image": "busybox", "securityContext": {**first(p), "privileged": True}}]
        ),
        {"kubernetes-pod-privileged"},
    ),
]


def analyze(pack: PolicyPack, typ: str, props: dict[str, Any]) -> list[Diagnostic]:
    return pack.analyze(typ, props)


@pytest.mark.parametrize("kind", WORKLOAD_KINDS)
def test_compliant_pod_passes_every_workload_kind(pack: PolicyPack, kind: str) -> None:
    assert analyze(pack, *wrap(kind, COMPLIANT_POD)) == []


@pytest.mark.parametrize("kind", WORKLOAD_KINDS)
@pytest.mark.parametrize(("label", "mutate", "expected"), POD_MUTATIONS, ids=[m[0] for m in POD_MUTATIONS])
def test_one_change_gives_exactly_the_expected_violation(
    pack: PolicyPack, kind: str, label: str, mutate: Mutation, expected: set[str]
) -> None:
    pod = copy.deepcopy(COMPLIANT_POD)
    mutate(pod)
    found = analyze(pack, *wrap(kind, pod))
    assert {d.policy for d in found} == expected, [d.message for d in found]
    for d in found:
        assert d.level == ("mandatory" if d.policy in BASELINE_POLICIES else "advisory")


def test_container_values_override_pod_values(pack: PolicyPack) -> None:
    pod = copy.deepcopy(COMPLIANT_POD)
    pod["spec"]["securityContext"]["runAsNonRoot"] = False
    first(pod)["runAsNonRoot"] = True
    pod["spec"]["securityContext"].pop("seccompProfile")
    first(pod)["seccompProfile"] = {"type": "RuntimeDefault"}
    assert analyze(pack, *wrap("Deployment", pod)) == []
    # ...and the other way round: a container's explicit false beats the pod's true.
    pod = copy.deepcopy(COMPLIANT_POD)
    first(pod)["runAsNonRoot"] = False
    assert {d.policy for d in analyze(pack, *wrap("Deployment", pod))} == {"kubernetes-pod-run-as-non-root"}


def test_unknown_security_value_fails_closed(pack: PolicyPack) -> None:
    pod = copy.deepcopy(COMPLIANT_POD)
    first(pod)["privileged"] = UNKNOWN
    found = [d for d in analyze(pack, *wrap("Deployment", pod)) if d.policy == "kubernetes-pod-privileged"]
    assert len(found) == 1 and found[0].level == "mandatory"
    assert "can't be known during preview" in found[0].message and "fails closed" in found[0].message


def test_unknown_pod_template_fails_closed(pack: PolicyPack) -> None:
    typ, props = wrap("Deployment", COMPLIANT_POD)
    props["spec"]["template"] = UNKNOWN
    found = {d.policy: d.level for d in analyze(pack, typ, props)}
    assert set(found) == {
        *BASELINE_POLICIES,
        *RESTRICTED_POLICIES,
        "kubernetes-workload-kind-understood",
        "kubernetes-pod-localhost-profiles",
        "gitlab-runner-only-through-the-release",  # whether it runs gitlab-runner cannot be known either
    }
    assert all(level == "mandatory" for p, level in found.items() if p in BASELINE_POLICIES)


def test_other_resource_types_are_ignored_by_pod_policies(pack: PolicyPack) -> None:
    assert (
        analyze(pack, "kubernetes:core/v1:ConfigMap", {"apiVersion": "v1", "kind": "ConfigMap", "data": {"spec": "privileged: true"}}) == []
    )


def test_configuration_changes_enforcement() -> None:
    pod = copy.deepcopy(COMPLIANT_POD)
    first(pod)["allowPrivilegeEscalation"] = True
    first(pod)["privileged"] = True
    with PolicyPack() as pack:
        assert {(d.policy, d.level) for d in analyze(pack, *wrap("Pod", pod))} == {
            ("kubernetes-pod-privileged", "mandatory"),
            ("kubernetes-pod-privilege-escalation", "advisory"),
        }
        pack.configure({"kubernetes-pod-privilege-escalation": "mandatory", "kubernetes-pod-privileged": "disabled"})
        assert {(d.policy, d.level) for d in analyze(pack, *wrap("Pod", pod))} == {("kubernetes-pod-privilege-escalation", "mandatory")}


def test_documented_policy_config_example_is_accepted() -> None:
    from verify.harness import ROOT

    example = json.loads((ROOT / "policies" / "policy-config.restricted.json").read_text())
    with PolicyPack() as pack:
        pack.configure(example)
        levels = {
            d.policy: d.level for d in analyze(pack, *wrap("Pod", {"metadata": {}, "spec": {"containers": [{"name": "a", "image": "b"}]}}))
        }
    assert all(levels[p] == "mandatory" for p in RESTRICTED_POLICIES if p in levels)
    assert "kubernetes-pod-run-as-non-root" in levels


# --- The stack against the pack -----------------------------------------------------------------


def stack_resources(run: ProgramRun) -> list[ResourceInput]:
    return [ResourceInput(r.type, r.name, r.urn, r.inputs) for r in run.resources if r.custom]


@pytest.fixture(scope="module")
def dev_resources() -> list[ResourceInput]:
    return stack_resources(run_stack("dev"))


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_every_stack_passes_its_own_pack(pack: PolicyPack, stack: str) -> None:
    found = pack.analyze_all(stack_resources(run_stack(stack)))
    assert [d for d in found if d.level == "mandatory"] == []


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_first_preview_of_a_new_stack_passes_the_pack(pack: PolicyPack, stack: str) -> None:
    """On a stack's first preview nothing exists: ARNs, URLs, ids and the runner token are unknown.
    Fail-closed policies must still pass, so everything they read has to be known at preview."""
    from verify.harness import load_stack_file, run_program

    run = run_program(load_stack_file(stack), stack=stack, preview=True)
    release = run.one("kubernetes:helm.sh/v3:Release").inputs
    assert release["values"]["podAnnotations"]["gitlab-buildkit-runner/runner-id"] == UNKNOWN  # really a first preview
    found = pack.analyze_all(stack_resources(run))
    assert [d for d in found if d.level == "mandatory"] == []


def replace(
    resources: list[ResourceInput], typ: str, change: Callable[[dict[str, Any]], None], name: str | None = None
) -> list[ResourceInput]:
    result = []
    for r in resources:
        props = copy.deepcopy(dict(r.props))
        if r.type == typ and (name is None or r.name == name):
            change(props)
        result.append(ResourceInput(r.type, r.name, r.urn, props))
    return result


def mandatory(pack: PolicyPack, resources: list[ResourceInput]) -> list[str]:
    return sorted(d.policy for d in pack.analyze_all(resources) if d.level == "mandatory")


def test_adding_one_privileged_pod_gives_exactly_one_violation(pack: PolicyPack, dev_resources: list[ResourceInput]) -> None:
    pod = copy.deepcopy(COMPLIANT_POD)
    first(pod)["privileged"] = True
    typ, props = wrap("Pod", pod)
    extra = ResourceInput(typ, "intruder", "urn:pulumi:dev::gitlab-buildkit-runner::kubernetes:core/v1:Pod::intruder", props)
    assert mandatory(pack, [*dev_resources, extra]) == ["kubernetes-pod-privileged"]


RELEASE = "kubernetes:helm.sh/v3:Release"
RUNNER_CONFIG_POLICIES = [
    "gitlab-runner-privileged",
    "gitlab-runner-privilege-escalation",
    "gitlab-runner-capabilities",
    "gitlab-runner-overwrites",
    "gitlab-runner-host-volumes",
    "gitlab-runner-config-understood",
    "gitlab-runner-pod-spec-patches",
]


def runner_toml_edit(edit: Callable[[str], str]) -> Callable[[dict[str, Any]], None]:
    def change(props: dict[str, Any]) -> None:
        props["values"]["runners"]["config"] = edit(props["values"]["runners"]["config"])

    return change


@pytest.mark.parametrize(
    ("label", "edit", "expected"),
    [
        ("privileged", lambda t: t.replace("privileged = false", "privileged = true", 1), ["gitlab-runner-privileged"]),
        (
            "helper escalation",
            lambda t: t.replace(
                "[runners.kubernetes.helper_container_security_context]\nprivileged = false\nallow_privilege_escalation = false",
                "[runners.kubernetes.helper_container_security_context]\nprivileged = false\nallow_privilege_escalation = true",
            ),
            ["gitlab-runner-privilege-escalation"],
        ),
        (
            "global escalation",
            lambda t: t.replace("privileged = false\n", "privileged = false\nallow_privilege_escalation = true\n", 1),
            ["gitlab-runner-privilege-escalation"],
        ),
        (
            "cap_add",
            lambda t: t.replace("privileged = false\n", 'privileged = false\ncap_add = ["SYS_ADMIN"]\n', 1),
            ["gitlab-runner-capabilities"],
        ),
        (
            "overwrite",
            lambda t: t.replace("privileged = false\n", 'privileged = false\nnamespace_overwrite_allowed = ".*"\n', 1),
            ["gitlab-runner-overwrites"],
        ),
        (
            "host path",
            lambda t: t + '\n[[runners.kubernetes.volumes.host_path]]\nname = "docker"\nmount_path = "/var/run/docker.sock"\n',
            ["gitlab-runner-host-volumes"],
        ),
        (
            "apparmor unconfined",
            lambda t: t.replace(
                "[runners.kubernetes.pod_annotations]\n",
                '[runners.kubernetes.pod_annotations]\n"container.apparmor.security.beta.kubernetes.io/build" = "unconfined"\n',
                1,
            ),
            ["gitlab-runner-unconfined-profiles"],
        ),
        # Unparseable TOML cannot pass any check that reads it (fail closed).
        (
            "not toml",
            lambda t: t + "\n[[[broken",
            sorted(
                [
                    *RUNNER_CONFIG_POLICIES,
                    "gitlab-runner-unconfined-profiles",
                    "gitlab-runner-localhost-profiles",
                    "gitlab-runner-namespaces",
                    "gitlab-runner-values-allow-listed",
                    "kubernetes-job-deny-ingress",
                    "kubernetes-job-egress-blocks-metadata",
                ]
            ),
        ),
    ],
)
def test_runner_config_violations(
    pack: PolicyPack, dev_resources: list[ResourceInput], label: str, edit: Callable[[str], str], expected: list[str]
) -> None:
    assert mandatory(pack, replace(dev_resources, RELEASE, runner_toml_edit(edit))) == expected


@pytest.mark.parametrize(
    ("label", "edit"),
    [
        ("no allowed_images (jobs may pick any image)", lambda t: re.sub(r"allowed_images = \[[^\]]*\]\n", "", t)),
        ("any image allowed", lambda t: re.sub(r"allowed_images = \[[^\]]*\]", 'allowed_images = ["**"]', t)),
        ("rootful buildkit allowed", lambda t: re.sub(r"allowed_images = \[[^\]]*\]", 'allowed_images = ["moby/buildkit:*"]', t)),
    ],
)
def test_escalation_exception_needs_allowed_images_limited_to_rootless_buildkit(
    pack: PolicyPack, dev_resources: list[ResourceInput], label: str, edit: Callable[[str], str]
) -> None:
    changed = replace(dev_resources, RELEASE, runner_toml_edit(edit))
    assert mandatory(pack, changed) == ["gitlab-runner-privilege-escalation"], label


MIRROR = "registry.example.com/mirror"


def _only_allowed(image: str, patterns: list[str]) -> Callable[[dict[str, Any]], None]:
    def edit(text: str) -> str:
        text = text.replace('image = "moby/buildkit:v0.25.1-rootless"', f'image = "{image}"')
        return re.sub(r"allowed_images = \[[^\]]*\]", "allowed_images = " + json.dumps(patterns), text)

    return runner_toml_edit(edit)


@pytest.fixture(scope="module")
def pack_trusting_mirror() -> Iterator[PolicyPack]:
    with PolicyPack() as running:
        levels = running.policy_levels()
        config: dict[str, Any] = dict(levels)
        for name in ("gitlab-runner-privilege-escalation", "gitlab-runner-buildkit-needs", "gitlab-runner-unconfined-profiles"):
            config[name] = {"enforcementLevel": levels[name], "trustedBuildkitMirrors": [MIRROR]}
        running.configure(config)
        yield running


def test_mirrored_rootless_buildkit_keeps_the_exception_when_the_pack_trusts_the_mirror(
    pack: PolicyPack, pack_trusting_mirror: PolicyPack, dev_resources: list[ResourceInput]
) -> None:
    mirrored = replace(
        dev_resources, RELEASE, _only_allowed(f"{MIRROR}/moby/buildkit:v0.25.1-rootless", [f"{MIRROR}/moby/buildkit:*rootless*"])
    )
    assert mandatory(pack_trusting_mirror, mirrored) == []
    # The default pack trusts Docker Hub only: a mirror is the platform team's explicit choice.
    assert mandatory(pack, mirrored) == ["gitlab-runner-privilege-escalation"]


@pytest.mark.parametrize(
    "pattern",
    [
        "*/moby/buildkit:*rootless*",  # matches evil.example/moby/buildkit in the runner's doublestar
        "**/moby/buildkit:*rootless*",
        "evil.example/moby/buildkit:*rootless*",
        f"{MIRROR}/evil/moby/buildkit:*rootless*",  # a path below the trusted mirror is not the mirror
        "registry.example.com/mirror*/moby/buildkit:*rootless*",
        "evilmoby/buildkit:*rootless*",
        "moby/buildkit:{v0.25.1-rootless,v0.25.1}",
        "moby/buildkit:[a-z]*rootless*",
        "moby/buildkit:*",
        "moby/buildkit:**rootless**",
    ],
)
def test_escalation_exception_refuses_patterns_wider_than_the_trusted_registries(
    pack_trusting_mirror: PolicyPack, dev_resources: list[ResourceInput], pattern: str
) -> None:
    changed = replace(dev_resources, RELEASE, _only_allowed("moby/buildkit:v0.25.1-rootless", ["moby/buildkit:*rootless*", pattern]))
    assert mandatory(pack_trusting_mirror, changed) == ["gitlab-runner-privilege-escalation"], pattern


@pytest.mark.parametrize("image", ["moby/buildkit:v0.25.1-rootless", "docker.io/moby/buildkit:v0.25.1-rootless"])
def test_docker_hub_spellings_keep_the_exception(pack: PolicyPack, dev_resources: list[ResourceInput], image: str) -> None:
    patterns = ["moby/buildkit:*rootless*", "docker.io/moby/buildkit:*rootless*"]
    assert mandatory(pack, replace(dev_resources, RELEASE, _only_allowed(image, patterns))) == []


def test_buildkit_needs_are_advisory(pack: PolicyPack, dev_resources: list[ResourceInput]) -> None:
    edit = runner_toml_edit(lambda t: t.replace('drop = [\n    "NET_RAW",\n]', 'drop = [\n    "ALL",\n]', 1))
    found = [d for d in pack.analyze_all(replace(dev_resources, RELEASE, edit)) if d.policy == "gitlab-runner-buildkit-needs"]
    assert len(found) == 1 and found[0].level == "advisory" and "newuidmap" in found[0].message


def test_escalation_exception_is_only_for_buildkit_images(pack: PolicyPack, dev_resources: list[ResourceInput]) -> None:
    edit = runner_toml_edit(lambda t: t.replace('image = "moby/buildkit:v0.25.1-rootless"', 'image = "docker:27-dind"'))
    assert mandatory(pack, replace(dev_resources, RELEASE, edit)) == ["gitlab-runner-privilege-escalation"]


def test_manager_without_seccomp_is_rejected(pack: PolicyPack, dev_resources: list[ResourceInput]) -> None:
    def change(props: dict[str, Any]) -> None:
        props["values"]["securityContext"].pop("seccompProfile")
        props["values"]["podSecurityContext"].pop("seccompProfile")

    assert mandatory(pack, replace(dev_resources, RELEASE, change)) == ["gitlab-runner-manager-restricted"]


def test_unconfined_mode_passes_only_when_acknowledged() -> None:
    from conftest import make_config

    from verify.harness import run_program

    raw = make_config(
        runner={"scope": {"type": "project_type", "projectId": 1}, "jobSecurityMode": "unconfined", "acknowledgeUnconfined": True}
    )
    resources = stack_resources(run_program(raw))
    with PolicyPack() as pack:
        assert mandatory(pack, resources) == []

        def unacknowledge(props: dict[str, Any]) -> None:
            props["metadata"]["annotations"] = {}

        # Without the acknowledgement annotation the namespace and both unconfined settings
        # (AppArmor annotation, seccomp pod_spec patch) are rejected.
        assert mandatory(pack, replace(resources, "kubernetes:core/v1:Namespace", unacknowledge, "runner-jobs")) == [
            "gitlab-runner-unconfined-profiles",
            "gitlab-runner-unconfined-profiles",
            "kubernetes-namespace-privileged-acknowledged",
        ]


@pytest.mark.parametrize(
    ("typ", "name", "change", "expected"),
    [
        (
            "kubernetes:core/v1:Namespace",
            "runner-jobs",
            lambda p: p["metadata"]["labels"].pop("pod-security.kubernetes.io/enforce"),
            ["kubernetes-namespace-psa-labels"],
        ),
        (
            "kubernetes:core/v1:Namespace",
            "runner-manager",
            lambda p: p["metadata"]["labels"].update({"pod-security.kubernetes.io/enforce-version": "latest"}),
            ["kubernetes-namespace-psa-labels"],
        ),
        (
            "kubernetes:core/v1:Namespace",
            "runner-manager",
            lambda p: p["metadata"]["labels"].update({"pod-security.kubernetes.io/enforce": "privileged"}),
            ["gitlab-runner-namespaces", "kubernetes-namespace-privileged-acknowledged"],
        ),
        (
            "kubernetes:rbac.authorization.k8s.io/v1:Role",
            "runner-executor",
            lambda p: p["rules"][0]["verbs"].append("*"),
            ["kubernetes-rbac-no-wildcards"],
        ),
        (
            "kubernetes:rbac.authorization.k8s.io/v1:Role",
            "runner-executor",
            lambda p: p["rules"][0].update(resources=["*"]),
            ["kubernetes-rbac-no-wildcards"],
        ),
        (
            "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding",
            "runner-executor",
            lambda p: p.update(roleRef={"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"}),
            ["kubernetes-rbac-no-cluster-admin"],
        ),
        (
            "kubernetes:networking.k8s.io/v1:NetworkPolicy",
            "runner-restrict-egress",
            lambda p: p["spec"]["egress"][1]["to"][0]["ipBlock"].pop("except"),
            ["kubernetes-job-egress-blocks-metadata"] * 2,  # IMDS and the Pod Identity agent (IPv4)
        ),
        (
            "kubernetes:networking.k8s.io/v1:NetworkPolicy",
            "runner-restrict-egress",
            lambda p: p["spec"]["egress"].append({}),
            ["kubernetes-job-egress-blocks-metadata"] * 4,
        ),  # IMDS and the Pod Identity agent, IPv4 and IPv6
        (
            "kubernetes:networking.k8s.io/v1:NetworkPolicy",
            "runner-restrict-egress",
            lambda p: p["metadata"].update(namespace="elsewhere"),
            ["kubernetes-job-egress-blocks-metadata"],
        ),
        (
            "kubernetes:networking.k8s.io/v1:NetworkPolicy",
            "runner-deny-ingress",
            lambda p: p["spec"].update(ingress=[{}]),
            ["kubernetes-job-deny-ingress"],
        ),
        (
            "aws:ecr/repository:Repository",
            "ecr-web",
            lambda p: p.update(imageScanningConfiguration={"scanOnPush": False}),
            ["aws-ecr-scan-on-push"],
        ),
        ("aws:ecr/repository:Repository", "ecr-web", lambda p: p.pop("encryptionConfigurations"), ["aws-ecr-encryption"]),
        ("aws:ecr/repository:Repository", "ecr-web", lambda p: p.update(imageTagMutability="MUTABLE"), ["aws-ecr-immutable-tags"]),
        ("aws:ecr/repository:Repository", "ecr-web", lambda p: p.pop("imageTagMutability"), ["aws-ecr-immutable-tags"]),
        ("aws:ecr/lifecyclePolicy:LifecyclePolicy", "ecr-web", lambda p: p.update(repository="other"), ["aws-ecr-lifecycle-policy"]),
        (
            "aws:iam/policy:Policy",
            "push-acme-web-policy",
            lambda p: p.update(policy=p["policy"].replace('"ecr:PutImage"', '"ecr:*"')),
            ["aws-iam-no-wildcard-actions"],
        ),
        (
            "aws:iam/policy:Policy",
            "push-acme-web-policy",
            lambda p: p.update(
                policy=p["policy"].replace('"ecr:GetAuthorizationToken"', '"ecr:GetAuthorizationToken", "ecr:DeleteRepository"')
            ),
            ["aws-iam-no-wildcard-resources"],
        ),
        (
            "aws:iam/policy:Policy",
            "push-acme-web-policy",
            lambda p: p.update(
                policy=json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})
            ),
            ["aws-iam-no-wildcard-actions", "aws-iam-no-wildcard-resources"],
        ),
        (
            "aws:iam/userPolicyAttachment:UserPolicyAttachment",
            "push-acme-web-policy",
            lambda p: p.update(policyArn="arn:aws:iam::aws:policy/AdministratorAccess"),
            ["aws-iam-attachments-allow-listed", "aws-iam-no-admin"],
        ),
        (
            "aws:iam/user:User",
            "push-acme-web-ci",
            lambda p: p.update(
                inlinePolicies=[{"name": "x", "policy": json.dumps({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})}]
            ),
            # inline policies get every document check, not only the action check
            ["aws-iam-no-wildcard-actions", "aws-iam-no-wildcard-resources"],
        ),
    ],
)
def test_stack_violations(
    pack: PolicyPack, dev_resources: list[ResourceInput], typ: str, name: str | None, change: Callable, expected: list[str]
) -> None:
    assert mandatory(pack, replace(dev_resources, typ, change, name)) == expected


def test_cache_repository_is_the_declared_mutable_exception(pack: PolicyPack, dev_resources: list[ResourceInput]) -> None:
    cache = next(r for r in dev_resources if r.name == "ecr-cache-acme-web")
    assert cache.props["imageTagMutability"] == "MUTABLE"
    assert "aws-ecr-immutable-tags" not in mandatory(pack, dev_resources)


def test_removing_network_isolation_is_rejected(pack: PolicyPack, dev_resources: list[ResourceInput]) -> None:
    without = [r for r in dev_resources if r.type != "kubernetes:networking.k8s.io/v1:NetworkPolicy"]
    assert mandatory(pack, without) == ["kubernetes-job-deny-ingress", "kubernetes-job-egress-blocks-metadata"]


def test_oidc_trust_without_sub_is_rejected(pack: PolicyPack) -> None:
    run = run_stack("staging")
    resources = stack_resources(run)

    def drop_sub(props: dict[str, Any]) -> None:
        doc = json.loads(props["assumeRolePolicy"])
        for statement in doc["Statement"]:
            for block in statement["Condition"].values():
                block.pop("gitlab.com:sub", None)
        props["assumeRolePolicy"] = json.dumps(doc)

    def wildcard_sub(props: dict[str, Any]) -> None:
        doc = json.loads(props["assumeRolePolicy"])
        doc["Statement"][0]["Condition"]["StringEquals"]["gitlab.com:sub"] = ["project_path:acme/*:ref_type:branch:ref:main"]
        props["assumeRolePolicy"] = json.dumps(doc)

    assert mandatory(pack, resources) == []
    role = "push-acme-web-ci"
    # one violation per statement (staging's web role has an exact and a tag-pattern statement)
    assert set(mandatory(pack, replace(resources, "aws:iam/role:Role", drop_sub, role))) == {"aws-iam-oidc-trust-sub"}
    assert set(mandatory(pack, replace(resources, "aws:iam/role:Role", wildcard_sub, role))) == {"aws-iam-oidc-trust-sub"}


def test_cache_repository_is_recognised_by_its_mark_whatever_its_name(pack: PolicyPack) -> None:
    """Regression: the pack matched the cache by name ('*/buildkit-cache'), the stack takes the name from config."""
    run = run_program(make_config(registry={"region": "eu-west-1", "applications": ["web"], "cacheRepository": "layer-cache"}))
    resources = stack_resources(run)
    cache = next(r for r in resources if r.name == "ecr-cache-acme-web")
    assert cache.props["name"] == "layer-cache/acme-web" and cache.props["imageTagMutability"] == "MUTABLE"
    assert "aws-ecr-immutable-tags" not in mandatory(pack, resources)


@pytest.mark.parametrize(
    ("name", "change"),
    [
        # the mark is the exception, not the name: an unmarked repository called buildkit-cache is an application
        ("ecr-cache-acme-web", lambda p: p.pop("tags")),
        ("ecr-cache-acme-web", lambda p: p.update(tags={"gitlab-buildkit-runner/repository-role": "application"})),
        ("ecr-cache-acme-web", lambda p: p.update(tags={"gitlab-buildkit-runner/repository-role": "Buildkit-Cache"})),
        ("ecr-web", lambda p: p.update(imageTagMutability="MUTABLE")),
        ("ecr-web", lambda p: p.update(imageTagMutability=None)),  # the provider default is MUTABLE
    ],
)
def test_mutable_repository_without_the_cache_mark_is_rejected(
    pack: PolicyPack, dev_resources: list[ResourceInput], name: str, change: Callable
) -> None:
    assert mandatory(pack, replace(dev_resources, "aws:ecr/repository:Repository", change, name)) == ["aws-ecr-immutable-tags"]
