"""One component per application project: its repositories, cache, push identity and CI/CD variables."""

from __future__ import annotations

import pytest
from conftest import make_config

from verify.harness import ProgramRun, Registration, run_program, run_stack

PROJECT_TYPE = "gitlab-buildkit-runner:application:ApplicationProject"


def _descendants(run: ProgramRun, root: Registration) -> list[Registration]:
    found, frontier = [], [root.urn]
    while frontier:
        children = [r for r in run.resources if r.parent in frontier]
        found += children
        frontier = [r.urn for r in children]
    return found


def _project(run: ProgramRun, key: str) -> tuple[Registration, list[Registration]]:
    component = run.one(PROJECT_TYPE, f"project-{key}")
    return component, _descendants(run, component)


def test_a_project_holds_its_repositories_cache_identity_and_variables_and_nothing_else() -> None:
    run = run_program(
        make_config(
            registry={
                "region": "eu-west-1",
                "applications": [
                    {"name": "web", "projectPath": "acme/shop"},
                    {"name": "api", "projectPath": "acme/shop"},
                    {"name": "worker", "projectPath": "acme/jobs"},
                ],
            }
        )
    )
    assert sorted(r.name for r in run.of_type(PROJECT_TYPE)) == ["project-acme-jobs", "project-acme-shop"]
    _, shop = _project(run, "acme-shop")
    repositories = sorted(r.inputs["name"] for r in shop if r.type == "aws:ecr/repository:Repository")
    assert repositories == ["api", "buildkit-cache/acme-shop", "web"]
    assert {r.type for r in shop} >= {
        "gitlab-buildkit-runner:credentials:PushIdentity",
        "gitlab-buildkit-runner:gitlab:CiVariables",
        "aws:iam/user:User",
        "aws:ecr/lifecyclePolicy:LifecyclePolicy",
        "gitlab:index/projectVariable:ProjectVariable",
    }
    variables = [r for r in shop if r.type == "gitlab:index/projectVariable:ProjectVariable"]
    assert {r.inputs["project"] for r in variables} == {"acme/shop"}
    assert not [r for r in shop if "worker" in r.name or "acme-jobs" in r.name]


@pytest.mark.parametrize("protect", [True, False])
def test_protection_follows_the_registry_and_never_reaches_keys_or_variables(protect: bool) -> None:
    run = run_program(make_config(registry={"region": "eu-west-1", "applications": ["web"], "protect": protect}))
    component, children = _project(run, "acme-web")
    assert not component.protect
    for r in children:
        if r.type.startswith("aws:ecr/") or r.type in ("aws:iam/user:User", "aws:iam/policy:Policy"):
            assert r.protect is protect, r.name
        if r.type in ("aws:iam/accessKey:AccessKey", "gitlab:index/projectVariable:ProjectVariable"):
            assert not r.protect, r.name  # rotation deletes keys; a variable is re-created in seconds


def test_the_program_reads_as_the_list_of_what_a_stack_is_made_of() -> None:
    """__main__ builds components; no ECR, IAM or GitLab variable resource is created at the top level."""
    run = run_stack("staging")
    top = [r for r in run.resources if r.custom and r.parent.endswith("::gitlab-buildkit-runner-staging")]
    assert {r.type for r in top} <= {"pulumi:providers:aws", "pulumi:providers:kubernetes", "pulumi:providers:gitlab"}, [
        r.type for r in top
    ]
