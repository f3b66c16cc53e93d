"""Every carrier of runner config (issue 23, class 3): the release must carry the stack's config, its
renderer and value-file inputs are refused, and a runner or its config.toml anywhere else is refused.
Each case was passed by the pack before (a release without runners.config, a v4 Chart's postRenderer,
a Deployment or Job running gitlab-runner, a ConfigMap or Secret holding a config.toml)."""

from __future__ import annotations

import base64
import copy
from typing import Any

import pytest
from pulumi._types import input_type_py_to_pulumi_names

from verify.harness import ROOT, run_stack
from verify.policy_client import PolicyPack

POLICY = "gitlab-runner-only-through-the-release"
VALUES = "gitlab-runner-values-allow-listed"
RELEASE = "kubernetes:helm.sh/v3:Release"


@pytest.fixture(scope="module")
def release() -> dict[str, Any]:
    (found,) = [r.inputs for r in run_stack("dev").resources if r.type == RELEASE]
    return dict(found)


def mandatory(pack: PolicyPack, typ: str, props: dict[str, Any]) -> list[str]:
    return sorted({d.policy for d in pack.analyze(typ, props) if d.level == "mandatory"})


def messages(pack: PolicyPack, typ: str, props: dict[str, Any], policy: str) -> list[str]:
    return [d.message for d in pack.analyze(typ, props) if d.policy == policy]


def test_the_stacks_release_passes(pack: PolicyPack, release: dict[str, Any]) -> None:
    assert messages(pack, RELEASE, release, VALUES) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda p: p["values"]["runners"].pop("config"), "values.runners.config is not set"),
        (lambda p: p["values"]["runners"].update(config="  "), "values.runners.config is not set"),
        (lambda p: p["values"]["runners"].update(config="concurrent = 4\n"), "has no [[runners]]"),
        (
            lambda p: p["values"]["runners"].update(
                config=p["values"]["runners"]["config"].replace('executor = "kubernetes"', 'executor = "shell"')
            ),
            "runners[0].executor = 'shell'",
        ),
        (
            lambda p: p.update(postRenderer={"command": "/bin/sed", "args": ["-e", "s/privileged: false/privileged: true/"]}),
            "postRenderer is set",
        ),
        (lambda p: p.update(postrender="/usr/local/bin/rewrite"), "postrender is set"),
        (lambda p: p.update(valueYamlFiles=[{"path": "extra.yaml"}]), "valueYamlFiles is set"),
        (lambda p: p.update(reuseValues=True), "reuseValues is set"),
        (lambda p: p.update(somethingNew=True), "['somethingNew'] are not inputs the pack knows"),
        (lambda p: p["values"].pop("strategy"), "values.strategy is not set"),
        (lambda p: p["values"].update(strategy={"type": "RollingUpdate"}), "values.strategy.type must be 'Recreate'"),
    ],
)
@pytest.mark.parametrize("typ", [RELEASE, "kubernetes:helm.sh/v4:Chart"])
def test_runner_releases_carry_the_stacks_config_and_nothing_unread(
    pack: PolicyPack, release: dict[str, Any], typ: str, change: Any, expected: str
) -> None:
    props = copy.deepcopy(release)
    change(props)
    found = messages(pack, typ, props, VALUES)
    assert any(expected in message for message in found), found


def test_every_helm_input_of_the_pinned_provider_is_classified() -> None:
    # A provider upgrade that adds an input (a new renderer, a new values source) fails here first.
    import sys

    import pulumi_kubernetes.helm.v3 as helm3
    import pulumi_kubernetes.helm.v4 as helm4

    sys.path.insert(0, str(ROOT / "policies"))
    from helm_release_policies import HELM_INPUTS

    # The wire names, as the SDK's input types declare them (PRIVATE SDK helper, pulumi 3.272.0 _types.py).
    sdk = {*input_type_py_to_pulumi_names(helm3.ReleaseArgs).values(), *input_type_py_to_pulumi_names(helm4.ChartArgs).values()}
    assert len(sdk) > 20 and "postRenderer" in sdk and "postrender" in sdk
    assert sdk - set(HELM_INPUTS) == set()


def _pod(image: str, command: list[str] | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "r", "image": image}
    if command:
        container["command"] = command
    return {"containers": [container]}


@pytest.mark.parametrize(
    ("typ", "props"),
    [
        (
            "kubernetes:apps/v1:Deployment",
            {"spec": {"template": {"spec": _pod("registry.gitlab.com/gitlab-org/gitlab-runner:alpine-v18.9.0")}}},
        ),
        (
            "kubernetes:apps/v1:DeploymentPatch",
            {"metadata": {"name": "x"}, "spec": {"template": {"spec": _pod("gitlab/gitlab-runner:latest")}}},
        ),
        ("kubernetes:batch/v1:Job", {"spec": {"template": {"spec": _pod("alpine:3", ["/usr/bin/gitlab-runner", "run-single"])}}}),
        (
            "kubernetes:batch/v1:CronJob",
            {"spec": {"jobTemplate": {"spec": {"template": {"spec": _pod("busybox", ["sh", "-c", "GITLAB-RUNNER run"])}}}}},
        ),
        (
            "kubernetes:core/v1:Pod",
            {"spec": {"initContainers": [{"name": "i", "image": "Registry.GitLab.com/gitlab-org/GITLAB-RUNNER:v1"}], "containers": []}},
        ),
    ],
)
def test_a_runner_outside_the_release_is_refused(pack: PolicyPack, typ: str, props: dict[str, Any]) -> None:
    assert POLICY in mandatory(pack, typ, props)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


CONFIG = 'concurrent = 4\n[[runners]]\nexecutor = "kubernetes"\n[runners.kubernetes]\nprivileged = true\n'


@pytest.mark.parametrize(
    ("typ", "props"),
    [
        ("kubernetes:core/v1:ConfigMap", {"metadata": {"name": "c"}, "data": {"config.toml": CONFIG}}),
        ("kubernetes:core/v1:ConfigMap", {"metadata": {"name": "c"}, "data": {"settings": CONFIG.replace("[[runners]]", "[[ Runners ]]")}}),
        ("kubernetes:core/v1:ConfigMap", {"metadata": {"name": "c"}, "binaryData": {"cfg": _b64(CONFIG)}}),
        ("kubernetes:core/v1:Secret", {"metadata": {"name": "s"}, "data": {"config": _b64(CONFIG)}}),
        ("kubernetes:core/v1:Secret", {"metadata": {"name": "s"}, "stringData": {"Config.TOML": "anything"}}),
        (
            "kubernetes:core/v1:ConfigMapPatch",
            {"metadata": {"name": "gitlab-runner", "namespace": "gitlab-runner"}, "data": {"config.template.toml": CONFIG}},
        ),
    ],
)
def test_runner_config_outside_the_release_is_refused(pack: PolicyPack, typ: str, props: dict[str, Any]) -> None:
    assert POLICY in mandatory(pack, typ, props)


@pytest.mark.parametrize(
    ("typ", "props"),
    [
        ("kubernetes:core/v1:ConfigMap", {"metadata": {"name": "c"}, "data": {"app.properties": "runners=2"}}),
        ("kubernetes:apps/v1:Deployment", {"spec": {"template": {"spec": _pod("registry.example.com/app:1.0")}}}),
    ],
)
def test_other_config_and_workloads_are_not_flagged(pack: PolicyPack, typ: str, props: dict[str, Any]) -> None:
    assert POLICY not in mandatory(pack, typ, props)


def test_a_secret_unknown_at_preview_is_judged_by_its_keys(pack: PolicyPack) -> None:
    from verify.policy_client import UNKNOWN

    assert POLICY not in mandatory(pack, "kubernetes:core/v1:Secret", {"metadata": {"name": "s"}, "stringData": {"token": UNKNOWN}})
    assert POLICY in mandatory(pack, "kubernetes:core/v1:Secret", {"metadata": {"name": "s"}, "stringData": {"config.toml": UNKNOWN}})


@pytest.mark.parametrize("name", ["system-node-critical", "system-cluster-critical", "gitlab-buildkit-runner-jobs-elsewhere"])
def test_job_pods_may_only_name_the_stacks_priority_class(pack: PolicyPack, release: dict[str, Any], name: str) -> None:
    props = copy.deepcopy(release)
    config = props["values"]["runners"]["config"]
    props["values"]["runners"]["config"] = config.replace(
        'priority_class_name = "gitlab-buildkit-runner-jobs-', f'priority_class_name = "{name}"\n# was "gitlab-buildkit-runner-jobs-', 1
    )
    assert props["values"]["runners"]["config"] != config
    found = messages(pack, RELEASE, props, "gitlab-runner-config-understood")
    assert any(f"priority_class_name = {name!r}: only the stack's class" in m for m in found), found
