"""URN pins of the shipped stacks: a rename without an alias would replace stateful resources."""

from __future__ import annotations

import json
from pathlib import Path

import pulumi
import pulumi_aws as aws
import pytest

from verify.harness import PROJECT, RecordingMonitor, StackMocks, run_stack
from verify.urns import check_stack, load_pins, shipped_stacks


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_shipped_stack_keeps_every_pinned_urn(stack: str) -> None:
    pins = load_pins()
    assert stack in shipped_stacks() and pins[stack], "every shipped stack is pinned"
    result = check_stack(stack, pins[stack])
    assert result.missing == [], "a pinned URN disappeared without an alias (the engine would replace the resource)"
    assert result.added == [], "new resources: pin them with `python -m verify.urns --write`"


def test_a_vanished_urn_is_reported_and_a_new_one_too() -> None:
    pins = load_pins()["dev"]
    renamed = pins[0].rsplit("::", 1)[0] + "::renamed-without-alias"
    result = check_stack("dev", [*pins[1:], renamed])
    assert result.missing == [renamed]
    assert result.added == [pins[0]]


def test_alias_urns_are_resolved_like_the_engine() -> None:
    """An alias spec names the old URN relative to the resource (same parent and type unless set)."""
    mocks = StackMocks("eu-west-1")
    monitor = RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack="dev", preview=False, monitor=monitor)

    class Holder(pulumi.ComponentResource):
        def __init__(self, name: str) -> None:
            super().__init__(f"{PROJECT}:registry:ImageRegistry", name)
            aws.ecr.Repository(
                "ecr-web-app",
                name="web",
                opts=pulumi.ResourceOptions(parent=self, aliases=[pulumi.Alias(name="ecr-web")]),
            )
            aws.ecr.Repository("ecr-api", name="api", opts=pulumi.ResourceOptions(aliases=[pulumi.Alias(parent=self)]))

    @pulumi.runtime.test
    def program() -> None:
        Holder("ecr")

    program()
    by_name = {r.name: r for r in monitor.registrations.values()}
    assert by_name["ecr-web-app"].aliases == [
        "urn:pulumi:dev::gitlab-buildkit-runner::gitlab-buildkit-runner:registry:ImageRegistry$aws:ecr/repository:Repository::ecr-web"
    ]
    # moved out of the component: the alias names the old parent
    assert by_name["ecr-api"].aliases == [
        "urn:pulumi:dev::gitlab-buildkit-runner::gitlab-buildkit-runner:registry:ImageRegistry$aws:ecr/repository:Repository::ecr-api"
    ]


# The application repositories and lifecycle policies of the shipped stacks before per-project
# identities: the upgrade must keep every one of them (a new URN would replace a repository of images).
APPLICATION_URNS = [
    f"urn:pulumi:{stack}::gitlab-buildkit-runner::gitlab-buildkit-runner:registry:ImageRegistry$aws:ecr/{kind}::ecr-{app}"
    for stack in ("dev", "staging", "prod")
    for app in ("web", "api", "worker")
    for kind in ("repository:Repository", "lifecyclePolicy:LifecyclePolicy")
]


@pytest.mark.parametrize("urn", APPLICATION_URNS)
def test_the_upgrade_to_per_project_identities_keeps_every_application_repository(urn: str) -> None:
    stack = urn.split(":")[2]
    from verify.harness import engine_urn

    run = run_stack(stack).resources
    assert urn in {engine_urn(r.urn) for r in run} | {a for r in run for a in r.aliases}


BEFORE_2_0 = json.loads((Path(__file__).parent / "fixtures" / "urns-before-2.0.0.json").read_text())


@pytest.mark.parametrize("stack", sorted(BEFORE_2_0))
def test_every_resource_of_1x_state_is_kept_by_urn_or_alias(stack: str) -> None:
    """One component per application project moved repositories, identities and variables: each keeps
    its 1.x URN as an alias (children inherit their moved parent's), so the upgrade replaces nothing."""
    from verify.harness import engine_urn

    run = run_stack(stack).resources
    carried = {engine_urn(r.urn) for r in run} | {a for r in run for a in r.aliases}
    lost = sorted(set(BEFORE_2_0[stack]) - carried)
    assert lost == [], lost
    assert len(BEFORE_2_0[stack]) > 50


def test_the_oidc_provider_moves_by_alias_not_replacement() -> None:
    run = run_stack("dev")  # the shipped stack that owns the account's provider
    provider = run.one("aws:iam/openIdConnectProvider:OpenIdConnectProvider")
    old = "urn:pulumi:dev::gitlab-buildkit-runner::gitlab-buildkit-runner:credentials:PushIdentity$aws:iam/openIdConnectProvider:OpenIdConnectProvider::push-gitlab"
    assert provider.aliases == [old]


def test_urns_carry_the_whole_parent_chain_as_the_engine_writes_them() -> None:
    """Found by the engine tier's upgrade scenario: Pulumi's MockMonitor keeps only the parent's last type,
    so every URN two components deep differed from the engine's, and the pins with it."""
    from verify.harness import engine_urn

    run = run_stack("dev")
    variable = next(r for r in run.of_type("gitlab:index/projectVariable:ProjectVariable") if r.name == "ci-acme-web-ecr_registry")
    assert engine_urn(variable.urn) == (
        "urn:pulumi:dev::gitlab-buildkit-runner::gitlab-buildkit-runner:application:ApplicationProject"
        "$gitlab-buildkit-runner:gitlab:CiVariables$gitlab:index/projectVariable:ProjectVariable::ci-acme-web-ecr_registry"
    )
    # and its 1.x URN is what the engine finds through the inherited alias
    assert (
        "urn:pulumi:dev::gitlab-buildkit-runner::gitlab-buildkit-runner:gitlab:CiVariables$gitlab:index/projectVariable:ProjectVariable::ci-acme-web-ecr_registry"
        in variable.aliases
    )
