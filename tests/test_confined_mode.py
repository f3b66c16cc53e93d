"""The `confined` job security mode: config rules, the builders that carry the profile names, and the pack
admitting exactly those names on exactly the build container (over its real gRPC protocol)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import make_config, runner_config_of
from test_policy_pack import RELEASE, replace, runner_toml_edit, stack_resources

from components.build_seccomp import BUILD_SYSCALLS, runtime_default
from components.config import ConfigError, parse_config
from components.config.confinement import DEFAULT_APPARMOR_PROFILE, DEFAULT_SECCOMP_PROFILE
from components.confined_profiles import (
    PROFILE_SHA256,
    apparmor_profile_text,
    confined_profiles_output,
    node_bootstrap_script,
    seccomp_profile_sha256,
    seccomp_profile_text,
)
from components.marks import DO_NOT_DISRUPT_ANNOTATIONS
from components.namespace_documents import job_namespace_annotations, job_namespace_labels
from components.runner_config import render_toml
from verify.harness import run_program
from verify.policy_client import PolicyPack, ResourceInput

SCOPE = {"type": "project_type", "projectId": 1}
AMD64 = {"kubernetes.io/arch": "amd64"}
LOCALHOST = "gitlab-runner-localhost-profiles"
MARKS = "kubernetes-namespace-job-security-marks"
NS = "kubernetes:core/v1:Namespace"


def confined(node_os: str = "ubuntu-24.04", **runner: Any) -> dict[str, Any]:
    return make_config(runner={"scope": SCOPE, "jobSecurityMode": "confined", "nodeOs": node_os, "nodeSelector": AMD64, **runner})


def error_of(raw: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    return str(info.value)


# --- config ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("runner", "expected"),
    [
        (
            {"jobSecurityMode": "confined", "nodeSelector": AMD64},
            r"runner\.nodeOs = null: must be set with jobSecurityMode 'confined' \(one of eks-al2023, bottlerocket, ubuntu-22\.04, "
            r"ubuntu-24\.04, kind-ubuntu\)",
        ),
        (
            {"jobSecurityMode": "confined", "nodeOs": "bottlerocket", "nodeSelector": AMD64},
            r"runner\.nodeOs = \"bottlerocket\": jobSecurityMode 'confined' is not supported on bottlerocket: Bottlerocket's host",
        ),
        (
            {"jobSecurityMode": "confined", "nodeOs": "kind-ubuntu", "nodeSelector": AMD64},
            r"runner\.nodeOs = \"kind-ubuntu\": jobSecurityMode 'confined' is not supported on kind-ubuntu: a kind node is a container",
        ),
        (
            {"jobSecurityMode": "confined", "nodeOs": "windows", "nodeSelector": AMD64},
            r"runner\.nodeOs = \"windows\": Input should be 'eks-al2023', 'bottlerocket', 'ubuntu-22\.04', 'ubuntu-24\.04' or 'kind-ubuntu'",
        ),
        (
            {"jobSecurityMode": "confined", "nodeOs": "eks-al2023"},
            r"runner\.nodeSelector\.kubernetes\.io/arch = null: must be 'amd64' with jobSecurityMode 'confined'",
        ),
        (
            {"jobSecurityMode": "confined", "nodeOs": "eks-al2023", "nodeSelector": {"kubernetes.io/arch": "arm64"}},
            r"runner\.nodeSelector\.kubernetes\.io/arch = \"arm64\": must be 'amd64'",
        ),
        (
            {"jobSecurityMode": "confined", "nodeOs": "eks-al2023", "nodeSelector": AMD64, "confinedProfiles": {"appArmor": "x"}},
            r"runner\.confinedProfiles\.appArmor = \"x\": eks-al2023 nodes run no AppArmor",
        ),
        (
            {"jobSecurityMode": "baseline", "nodeOs": "ubuntu-24.04"},
            r"runner\.nodeOs = \"ubuntu-24\.04\": jobSecurityMode 'baseline' cannot build on ubuntu-24\.04: containerd's default "
            r"AppArmor profile denies mount\(2\).*; use jobSecurityMode 'confined'",
        ),
        (
            {"confinedProfiles": {"seccomp": "a.json"}},
            r"runner\.confinedProfiles = \{\"seccomp\": \"a\.json\", \"appArmor\": .*\}: is only meaningful with jobSecurityMode 'confined'",
        ),
    ],
)
def test_confined_mode_config_errors_name_key_value_and_why(runner: dict[str, Any], expected: str) -> None:
    message = error_of(make_config(runner={"scope": SCOPE, **runner}))
    assert re.search(expected, message), message


@pytest.mark.parametrize(
    "name",
    [
        "/var/lib/kubelet/seccomp/x.json",  # absolute: the kubelet joins it to its seccomp directory
        "../x.json",
        "profiles/../../etc/x.json",
        "profiles/./x.json",
        "x.yaml",
        "x .json",
        "profiles//x.json",
        "localhost/x.json\n",
        "x" * 251 + ".json",
        "",
    ],
)
def test_a_seccomp_profile_name_that_is_not_a_localhost_path_is_refused(name: str) -> None:
    message = error_of(confined(confinedProfiles={"seccomp": name}))
    assert f"runner.confinedProfiles.seccomp = {json.dumps(name)[:117]}" in message
    assert "must be a Localhost seccomp profile path: relative to the kubelet's seccomp directory" in message


@pytest.mark.parametrize("name", ["a/b", "with space", " padded", "x" * 101, "", "unconfined\n"])
def test_an_apparmor_profile_name_must_be_a_plain_name(name: str) -> None:
    message = error_of(confined(confinedProfiles={"appArmor": name}))
    assert "runner.confinedProfiles.appArmor" in message and "must be an AppArmor profile name" in message


@pytest.mark.parametrize(
    ("node_os", "apparmor", "abi"),
    [("eks-al2023", None, None), ("ubuntu-22.04", DEFAULT_APPARMOR_PROFILE, "3.0"), ("ubuntu-24.04", DEFAULT_APPARMOR_PROFILE, "4.0")],
)
def test_the_node_os_decides_which_profiles_a_build_gets(node_os: str, apparmor: str | None, abi: str | None) -> None:
    names = parse_config(confined(node_os)).runner.confined_profile_names()
    assert names is not None
    assert (names.seccomp, names.apparmor, names.apparmor_abi) == (DEFAULT_SECCOMP_PROFILE, apparmor, abi)


def test_other_modes_have_no_profile_names() -> None:
    assert parse_config(make_config(runner={"scope": SCOPE, "nodeOs": "eks-al2023"})).runner.confined_profile_names() is None


# --- builders ----------------------------------------------------------------------------------------


def kube_of(raw: dict[str, Any]) -> dict[str, Any]:
    return tomllib.loads(render_toml(runner_config_of(parse_config(raw))))["runners"][0]


def test_the_profiles_go_on_the_build_container_only_through_one_patch() -> None:
    runner = kube_of(confined(confinedProfiles={"seccomp": "acme/buildkit.json", "appArmor": "acme-buildkit"}))
    kube = runner["kubernetes"]
    assert runner["feature_flags"] == {"FF_USE_ADVANCED_POD_SPEC_CONFIGURATION": True}
    assert kube.get("pod_annotations", {}) == DO_NOT_DISRUPT_ANNOTATIONS  # no AppArmor annotation: the patch sets profiles
    ((patch),) = kube["pod_spec"]
    assert (patch["name"], patch["patch_type"]) == ("buildkit-localhost-profiles", "strategic")
    assert json.loads(patch["patch"]) == {
        "containers": [
            {
                "name": "build",
                "securityContext": {
                    "seccompProfile": {"type": "Localhost", "localhostProfile": "acme/buildkit.json"},
                    "appArmorProfile": {"type": "Localhost", "localhostProfile": "acme-buildkit"},
                },
            }
        ]
    }


def test_nodes_without_apparmor_get_no_apparmor_profile() -> None:
    (patch,) = kube_of(confined("eks-al2023"))["kubernetes"]["pod_spec"]
    assert json.loads(patch["patch"])["containers"][0]["securityContext"] == {
        "seccompProfile": {"type": "Localhost", "localhostProfile": DEFAULT_SECCOMP_PROFILE}
    }


def test_the_job_namespace_stays_baseline_and_names_the_profiles() -> None:
    names = parse_config(confined()).runner.confined_profile_names()
    labels = job_namespace_labels("confined", "v1.33")
    assert (labels["pod-security.kubernetes.io/enforce"], labels["pod-security.kubernetes.io/warn"]) == ("baseline", "restricted")
    assert job_namespace_annotations("confined", names) == {
        "gitlab-buildkit-runner/job-security-mode": "confined",
        "gitlab-buildkit-runner/seccomp-profile": DEFAULT_SECCOMP_PROFILE,
        "gitlab-buildkit-runner/apparmor-profile": DEFAULT_APPARMOR_PROFILE,
    }


def test_the_default_name_stands_for_one_profile() -> None:
    # A changed profile (another containerd default, another syscall) needs a new default name and pin.
    assert seccomp_profile_sha256() == PROFILE_SHA256[DEFAULT_SECCOMP_PROFILE]


def test_the_profile_file_is_runtime_default_plus_exactly_the_build_syscalls() -> None:
    profile = json.loads(seccomp_profile_text())
    default = runtime_default()
    assert {k: v for k, v in profile.items() if k != "syscalls"} == {k: v for k, v in default.items() if k != "syscalls"}
    added = [rule for rule in profile["syscalls"] if rule not in default["syscalls"]]
    assert added == [{"names": sorted(BUILD_SYSCALLS), "action": "SCMP_ACT_ALLOW"}]


@pytest.mark.parametrize(("abi", "has_userns"), [("3.0", False), ("4.0", True)])
def test_the_apparmor_profile_replaces_only_the_mount_denial(abi: str, has_userns: bool) -> None:
    text = apparmor_profile_text("gbr-test", abi)
    rules = {line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")}
    assert f"abi <abi/{abi}>," in rules and "profile gbr-test flags=(attach_disconnected,mediate_deleted) {" in rules
    assert {"mount,", "pivot_root,", "umount,"} <= rules and "deny mount," not in rules
    assert ("userns," in rules) is has_userns
    assert "deny @{PROC}/sysrq-trigger rwklx," in rules and "deny /sys/kernel/security/** rwklx," in rules


@pytest.fixture
def bootstrapped(tmp_path: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    names = parse_config(confined("ubuntu-22.04")).runner.confined_profile_names()
    assert names is not None
    output = confined_profiles_output(names)
    script = tmp_path / "bootstrap.sh"
    script.write_text(output["nodeBootstrap"])
    root = tmp_path / "root"
    result = subprocess.run(["sh", str(script)], env={**os.environ, "GBR_ROOT": str(root)}, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    yield root, output


def test_the_bootstrap_writes_the_profiles_under_the_names_the_runner_uses(bootstrapped: tuple[Path, dict[str, Any]]) -> None:
    root, output = bootstrapped
    seccomp = root / output["seccomp"]["nodePath"].lstrip("/")
    assert output["seccomp"]["nodePath"] == f"/var/lib/kubelet/seccomp/{DEFAULT_SECCOMP_PROFILE}"
    assert seccomp.read_text() == seccomp_profile_text()
    assert hashlib.sha256(seccomp.read_bytes()).hexdigest() == output["seccomp"]["sha256"]
    apparmor = root / "etc/apparmor.d" / DEFAULT_APPARMOR_PROFILE
    assert apparmor.read_text() == apparmor_profile_text(DEFAULT_APPARMOR_PROFILE, "3.0")
    assert output["appArmor"] == {"localhostProfile": DEFAULT_APPARMOR_PROFILE, "abi": "3.0"}


def test_the_bootstrap_fails_when_the_file_is_not_what_it_wrote(tmp_path: Path) -> None:
    names = parse_config(confined("eks-al2023")).runner.confined_profile_names()
    assert names is not None
    script = node_bootstrap_script(names).replace('"architectures"', '"architecture"', 1)  # a corrupted copy
    result = subprocess.run(["sh", "-c", script], env={**os.environ, "GBR_ROOT": str(tmp_path)}, capture_output=True, text=True, timeout=30)
    assert result.returncode != 0 and "FAILED" in result.stdout + result.stderr


def test_the_bootstrap_is_printed_from_a_stack_file_before_any_deployment(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    from verify.node_bootstrap import main

    raw = confined("ubuntu-22.04")
    path = tmp_path / "Pulumi.prod.yaml"
    path.write_text(yaml.safe_dump({"config": {f"gitlab-buildkit-runner:{k}": v for k, v in raw.items()}}))
    assert main(["--config-file", str(path)]) == 0
    names = parse_config(raw).runner.confined_profile_names()
    assert names is not None and capsys.readouterr().out == node_bootstrap_script(names)
    assert main(["--stack", "dev"]) == 1
    assert "runner.jobSecurityMode is 'baseline'; only 'confined' uses node profiles" in capsys.readouterr().err


def test_the_stack_exports_the_profiles_and_the_bootstrap() -> None:
    run = run_program(confined("eks-al2023"))
    exported = run.outputs["confinedProfiles"]
    assert exported["seccomp"]["localhostProfile"] == DEFAULT_SECCOMP_PROFILE and exported["appArmor"] is None
    assert seccomp_profile_text().rstrip("\n") in exported["nodeBootstrap"]
    jobs = run.one(NS, "runner-jobs").inputs["metadata"]
    assert jobs["annotations"]["gitlab-buildkit-runner/seccomp-profile"] == DEFAULT_SECCOMP_PROFILE
    assert "gitlab-buildkit-runner/apparmor-profile" not in jobs["annotations"]


# --- the pack ----------------------------------------------------------------------------------------

pytestmark = pytest.mark.xdist_group("policy-pack")


@pytest.fixture(scope="module")
def stack() -> list[ResourceInput]:
    return stack_resources(run_program(confined()))


def mandatory(pack: PolicyPack, resources: list[ResourceInput]) -> list[str]:
    return sorted(d.policy for d in pack.analyze_all(resources) if d.level == "mandatory")


def test_the_confined_stack_passes_its_pack(pack: PolicyPack, stack: list[ResourceInput]) -> None:
    assert mandatory(pack, stack) == []


def patch_block(patch: str, patch_type: str = "strategic") -> Callable[[str], str]:
    block = f'\n[[runners.kubernetes.pod_spec]]\nname = "extra"\npatch_type = "{patch_type}"\npatch = {json.dumps(patch)}\n'
    return lambda t: t + block


SECCOMP = f'{{"type": "Localhost", "localhostProfile": "{DEFAULT_SECCOMP_PROFILE}"}}'
APPARMOR = f'{{"type": "Localhost", "localhostProfile": "{DEFAULT_APPARMOR_PROFILE}"}}'


def annotation(key: str, value: str) -> Callable[[str], str]:
    """Adds a pod annotation to the config's existing table (every job pod has the autoscalers' marks)."""
    header = "[runners.kubernetes.pod_annotations]\n"

    def edit(t: str) -> str:
        assert header in t
        return t.replace(header, f'{header}"{key}" = "{value}"\n', 1)

    return edit


@pytest.mark.parametrize(
    "edit",
    [
        # another name, or the same file spelled differently (names match exactly)
        lambda t: t.replace("rootless-buildkit-v1.json", "rootless-buildkit-v2.json"),
        lambda t: t.replace(DEFAULT_SECCOMP_PROFILE, "./" + DEFAULT_SECCOMP_PROFILE),
        lambda t: t.replace(DEFAULT_SECCOMP_PROFILE, "gitlab-buildkit-runner//rootless-buildkit-v1.json"),
        lambda t: t.replace(DEFAULT_SECCOMP_PROFILE, "operator/gitlab-runner-jobs/permissive.json"),
        lambda t: t.replace(f'{DEFAULT_APPARMOR_PROFILE}\\"', 'unconfined\\"'),
        # the stack's own names, on another container or at pod level
        patch_block(f'{{"containers": [{{"name": "helper", "securityContext": {{"seccompProfile": {SECCOMP}}}}}]}}'),
        patch_block(f'{{"initContainers": [{{"name": "init-permissions", "securityContext": {{"seccompProfile": {SECCOMP}}}}}]}}'),
        patch_block(f'{{"ephemeralContainers": [{{"name": "build", "securityContext": {{"appArmorProfile": {APPARMOR}}}}}]}}'),
        patch_block(f'{{"securityContext": {{"seccompProfile": {SECCOMP}}}}}', "merge"),
        patch_block(f'[{{"op": "add", "path": "/containers/1/securityContext/seccompProfile", "value": {SECCOMP}}}]', "json"),
        patch_block(f'{{"containers": [{{"name": "svc-0", "image": "postgres:16", "securityContext": {{"seccompProfile": {SECCOMP}}}}}]}}'),
        # AppArmor through the beta annotation, the old seccomp annotations
        annotation("container.apparmor.security.beta.kubernetes.io/build", "localhost/other"),
        annotation("container.apparmor.security.beta.kubernetes.io/helper", f"localhost/{DEFAULT_APPARMOR_PROFILE}"),
        annotation("seccomp.security.alpha.kubernetes.io/pod", f"localhost/{DEFAULT_SECCOMP_PROFILE}"),
        annotation("container.seccomp.security.alpha.kubernetes.io/build", f"localhost/{DEFAULT_SECCOMP_PROFILE}"),
        # a patch that swaps the build container's image keeps its profiles but not the admission
        patch_block('{"containers": [{"name": "build", "image": "docker:27-dind"}]}'),
        # a second container named build (JSON patch appends; strategic merge would merge by name)
        patch_block(
            f'[{{"op": "add", "path": "/containers/-", "value": {{"name": "build", "image": "docker:27-dind", '
            f'"securityContext": {{"seccompProfile": {SECCOMP}}}}}}}]',
            "json",
        ),
    ],
)
def test_only_the_stacks_exact_profiles_on_the_build_container_pass(pack: PolicyPack, stack: list[ResourceInput], edit: Any) -> None:
    assert set(mandatory(pack, replace(stack, RELEASE, runner_toml_edit(edit)))) == {LOCALHOST}


def test_native_profile_fields_cannot_carry_a_localhost_profile(pack: PolicyPack, stack: list[ResourceInput]) -> None:
    def edit(t: str) -> str:
        return t.replace(
            "[runners.kubernetes.build_container_security_context]\n",
            '[runners.kubernetes.build_container_security_context]\nseccomp_profile = "localhost"\n',
        )

    edited = replace(stack, RELEASE, runner_toml_edit(edit))
    assert edited != stack
    assert mandatory(pack, edited) == [LOCALHOST]


def marks_change(change: Callable[[dict[str, str]], None]) -> Callable[[dict[str, Any]], None]:
    def apply(props: dict[str, Any]) -> None:
        change(props["metadata"]["annotations"])

    return apply


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        # the runner still names the profiles, the namespace no longer does
        (lambda a: a.clear(), [LOCALHOST, LOCALHOST]),
        (lambda a: a.update({"gitlab-buildkit-runner/job-security-mode": "baseline"}), [LOCALHOST, LOCALHOST, MARKS, MARKS]),
        (lambda a: a.update({"gitlab-buildkit-runner/job-security-mode": "Confined"}), [LOCALHOST, LOCALHOST, MARKS, MARKS, MARKS]),
        (lambda a: a.update({"gitlab-buildkit-runner/seccomp-profile": "gitlab-buildkit-runner/other.json"}), [LOCALHOST]),
        (lambda a: a.update({"gitlab-buildkit-runner/seccomp-profile": "../../etc/x.json"}), [LOCALHOST, LOCALHOST, MARKS]),
        (lambda a: a.pop("gitlab-buildkit-runner/apparmor-profile"), [LOCALHOST]),
        (lambda a: a.update({"gitlab-buildkit-runner/apparmor-profile": "a b"}), [LOCALHOST, LOCALHOST, MARKS]),
    ],
)
def test_the_namespace_marks_decide_which_names_pass(
    pack: PolicyPack, stack: list[ResourceInput], change: Callable[[dict[str, str]], None], expected: list[str]
) -> None:
    assert mandatory(pack, replace(stack, NS, marks_change(change), "runner-jobs")) == expected


def test_a_privileged_confined_namespace_is_not_confined(pack: PolicyPack, stack: list[ResourceInput]) -> None:
    def privileged(props: dict[str, Any]) -> None:
        props["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] = "privileged"

    assert mandatory(pack, replace(stack, NS, privileged, "runner-jobs")) == [
        LOCALHOST,
        LOCALHOST,
        "kubernetes-namespace-privileged-acknowledged",
    ]


def test_a_baseline_stack_may_not_add_localhost_profiles(pack: PolicyPack) -> None:
    baseline = stack_resources(run_program(make_config(runner={"scope": SCOPE})))
    edit = patch_block(f'{{"containers": [{{"name": "build", "securityContext": {{"seccompProfile": {SECCOMP}}}}}]}}')
    assert mandatory(pack, baseline) == []
    assert mandatory(pack, replace(baseline, RELEASE, runner_toml_edit(edit))) == [LOCALHOST]


def test_the_marks_belong_on_namespace_resources_not_patches(pack: PolicyPack) -> None:
    props = {
        "metadata": {
            "name": "kube-system",
            "annotations": {"gitlab-buildkit-runner/job-security-mode": "confined", "gitlab-buildkit-runner/seccomp-profile": "x.json"},
        }
    }
    found = {d.policy for d in pack.analyze("kubernetes:core/v1:NamespacePatch", props) if d.level == "mandatory"}
    assert found == {MARKS}


WORKLOAD = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "w", "namespace": "gitlab-runner"},
    "spec": {
        "selector": {"matchLabels": {"app": "w"}},
        "template": {
            "metadata": {"labels": {"app": "w"}},
            "spec": {
                "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [
                    {
                        "name": "w",
                        "image": "busybox:1.36",
                        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                    }
                ],
            },
        },
    },
}


@pytest.mark.parametrize(
    "change",
    [
        lambda s, m: s["securityContext"].update(seccompProfile={"type": "Localhost", "localhostProfile": DEFAULT_SECCOMP_PROFILE}),
        lambda s, m: s["containers"][0]["securityContext"].update(appArmorProfile={"type": "Localhost", "localhostProfile": "x"}),
        lambda s, m: m.update(annotations={"container.apparmor.security.beta.kubernetes.io/w": "localhost/x"}),
        lambda s, m: m.update(annotations={"seccomp.security.alpha.kubernetes.io/pod": "localhost/x.json"}),
        # a profile path without its type is still a Localhost profile to the pack (fail closed)
        lambda s, m: s["containers"][0]["securityContext"].update(seccompProfile={"localhostProfile": "x.json"}),
    ],
)
def test_workloads_the_stack_manages_never_name_a_localhost_profile(pack: PolicyPack, change: Any) -> None:
    import copy

    props = copy.deepcopy(WORKLOAD)
    assert {d.policy for d in pack.analyze("kubernetes:apps/v1:Deployment", props) if d.level == "mandatory"} == set()
    template = props["spec"]["template"]
    change(template["spec"], template["metadata"])
    found = {d.policy for d in pack.analyze("kubernetes:apps/v1:Deployment", props) if d.level == "mandatory"}
    assert "kubernetes-pod-localhost-profiles" in found
    assert found - {"kubernetes-pod-localhost-profiles", "kubernetes-pod-seccomp-baseline", "kubernetes-pod-apparmor"} == set()
