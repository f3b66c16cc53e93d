"""Facts the stack and the pack state independently, on purpose: the pack never imports components/.

Each test ties one restated fact so the two sides cannot drift apart silently.
"""

from __future__ import annotations

import ipaddress
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
    ["PSA_LABEL_PREFIX", "JOB_SECURITY_MODE_ANNOTATION", "REPOSITORY_ROLE_TAG", "BUILD_CACHE_ROLE"],
)
def test_pack_reads_the_marks_the_stack_writes(name: str) -> None:
    assert getattr(pack_marks, name) == getattr(marks, name)


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


def test_pack_metadata_addresses_are_the_stacks_default_exclusions() -> None:
    stack_side = {ipaddress.ip_network(c) for c in NetworkConfig().metadata_cidrs}
    for address in network_policies.METADATA_ADDRESSES:
        assert any(address in network for network in stack_side), f"{address} is not excluded by the stack's default metadataCidrs"
    assert len(stack_side) == len(network_policies.METADATA_ADDRESSES)
