"""Facts the stack and the pack state independently, on purpose: the pack never imports components/.

Each test ties one restated fact so the two sides cannot drift apart silently.
"""

from __future__ import annotations

import ipaddress
import json
import sys

import pytest

from components import marks
from components.config import NetworkConfig
from components.helm_values import manager_pod_security_context, manager_security_context
from verify.harness import ROOT

sys.path.insert(0, str(ROOT / "policies"))
import marks as pack_marks
import network_policies
import runner_config_checks


@pytest.mark.parametrize(
    "name",
    [
        "PSA_LABEL_PREFIX",
        "MIN_POD_SECURITY_VERSION",
        "JOB_SECURITY_MODE_ANNOTATION",
        "SECCOMP_PROFILE_ANNOTATION",
        "APPARMOR_PROFILE_ANNOTATION",
        "REPOSITORY_ROLE_TAG",
        "BUILD_CACHE_ROLE",
    ],
)
def test_pack_reads_the_marks_the_stack_writes(name: str) -> None:
    assert getattr(pack_marks, name) == getattr(marks, name)


def test_pack_knows_every_job_security_mode() -> None:
    import typing

    from components.config import JobSecurityMode

    assert typing.get_args(JobSecurityMode) == pack_marks.JOB_SECURITY_MODES


def test_pack_reads_profile_names_with_the_configs_syntax() -> None:
    from components.config import confinement

    assert confinement.SECCOMP_PATH.pattern == pack_marks.SECCOMP_PROFILE_PATTERN
    assert confinement.APPARMOR_NAME.pattern == pack_marks.APPARMOR_PROFILE_PATTERN


def test_pack_enforce_label_is_under_the_stack_prefix() -> None:
    assert f"{marks.PSA_LABEL_PREFIX}/enforce" == pack_marks.PSA_ENFORCE


def test_manager_security_context_satisfies_the_packs_restatement() -> None:
    """The pack restates what 'restricted' needs of the manager; the stack's context must pass it exactly."""
    values = {
        "securityContext": manager_security_context(),
        "podSecurityContext": manager_pod_security_context(),
        "rbac": {"create": False},
    }
    assert runner_config_checks.manager_context_problems(values) == []
    # and the restatement is not vacuous: dropping one setting the stack relies on is caught
    weaker = {**values, "securityContext": {**manager_security_context(), "allowPrivilegeEscalation": True}}
    assert runner_config_checks.manager_context_problems(weaker) == ["securityContext.allowPrivilegeEscalation must be false"]


def test_pack_and_stack_name_the_same_metadata_addresses() -> None:
    from components.config.network import METADATA_ADDRESSES

    assert {ipaddress.ip_address(a) for a in METADATA_ADDRESSES} == set(network_policies.METADATA_ADDRESSES)


def test_pack_metadata_addresses_are_the_stacks_default_exclusions() -> None:
    stack_side = {ipaddress.ip_network(c) for c in NetworkConfig().metadata_cidrs}
    for address in network_policies.METADATA_ADDRESSES:
        assert any(address in network for network in stack_side), f"{address} is not excluded by the stack's default metadataCidrs"
    assert len(stack_side) == len(network_policies.METADATA_ADDRESSES)


FULL_RUNNER = {
    "scope": {"type": "project_type", "projectId": 1},
    "managerImageTag": "alpine-v18.9.0",
    "helperImage": "registry.gitlab.com/gitlab-org/gitlab-runner/gitlab-runner-helper:x86_64-v18.9.0",
    "nodeSelector": {"kubernetes.io/arch": "amd64"},
    "cpuLimitOverwriteMax": "8",
    "memoryLimitOverwriteMax": "16Gi",
    "allowedServices": ["postgres:16*"],
    "jobSecurityMode": "unconfined",
    "acknowledgeUnconfined": True,
}


def _full_config():  # type: ignore[no-untyped-def]
    import sys

    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import make_config

    from components.config import parse_config

    return parse_config(make_config(runner=FULL_RUNNER))


def test_pack_values_allow_list_covers_every_value_the_stack_writes() -> None:
    import helm_release_policies

    from components.helm_values import build_helm_values

    cfg = _full_config()
    values = build_helm_values(
        cfg.runner,
        gitlab_url=cfg.gitlab.url,
        job_namespace=cfg.kubernetes.job_namespace,
        secret_name="s",
        service_account="sa",
        runner_config_toml="x",
        pod_annotations={marks.RUNNER_ID_ANNOTATION: "1"},
    )
    assert list(helm_release_policies.value_problems(values)) == []
    assert list(helm_release_policies.value_problems({**values, "envVars": []})) == [
        "values.envVars is not a value the stack sets (the chart would take settings from it)"
    ]


def test_pack_config_toml_schema_covers_every_key_the_stack_writes() -> None:
    import sys

    from components.runner_config import render_toml

    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import runner_config_of

    config = runner_config_checks.parse_runner_config(render_toml(runner_config_of(_full_config())))
    assert config.unknown == []
    assert "gitlab-runner-config-understood" not in runner_config_checks.runner_config_problems(config)


def test_the_packs_podspec_field_names_are_the_kubernetes_schemas() -> None:
    # The pack refuses pod_spec patch keys that are not the API's names; the names must be the API's own
    # (regenerate with `python -m verify.podspec_schema` when the pinned Kubernetes version moves).
    from verify import podspec_schema

    assert podspec_schema.OUT.read_text() == podspec_schema.render()
    types = json.loads(podspec_schema.OUT.read_text())["types"]
    assert types["PodSpec"]["hostPID"] == {"scalar": "boolean"}
    assert types["Container"]["volumeMounts"]["mergeKey"] == "mountPath"


def test_the_pack_knows_the_stacks_job_priority_class() -> None:
    assert marks.job_priority_class_name("ns") == f"{pack_marks.JOB_PRIORITY_CLASS_PREFIX}ns"
