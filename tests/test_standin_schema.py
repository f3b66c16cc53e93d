"""The stand-in provider plugins' `Check` (e2e/standins/schema.py): what the real providers accept.

Two directions, so neither the stand-ins nor the program can drift alone: every aws and gitlab input the
shipped stacks register passes the stand-ins' check (the engine tier would otherwise fail on the
stand-in, not on the stack), and a wrong name, a wrong type or a nested typo is refused with the
property path, as the real provider's Check refuses it.
"""

from __future__ import annotations

from typing import Any

import pytest

from e2e.standins.aws_provider import provider as aws_provider
from e2e.standins.gitlab_provider import provider as gitlab_provider
from e2e.standins.provider_values import UNKNOWN, secret
from e2e.standins.schema import Schema
from verify.harness import run_stack

AWS = Schema("aws")
GITLAB = Schema("gitlab")


@pytest.mark.parametrize("stack", ["dev", "staging", "prod", "local"])
def test_every_input_the_shipped_stacks_register_passes_the_standins_check(stack: str) -> None:
    run = run_stack(stack)
    checked = 0
    for resource in run.resources:
        package = resource.type.split(":")[0]
        if package not in ("aws", "gitlab") or not resource.custom:
            continue
        schema = AWS if package == "aws" else GITLAB
        assert schema.check_resource(resource.type, resource.inputs) == [], (resource.type, resource.name)
        checked += 1
    assert checked > 20


def test_the_standins_implement_every_type_the_shipped_stacks_use() -> None:
    implemented = set(aws_provider().resources) | set(gitlab_provider().resources)
    used = {
        r.type
        for stack in ("dev", "staging", "prod", "local")
        for r in run_stack(stack).resources
        if r.custom and r.type.split(":")[0] in ("aws", "gitlab")
    }
    assert used <= implemented, used - implemented


@pytest.mark.parametrize(
    ("token", "inputs", "path", "reason"),
    [
        ("aws:ecr/repository:Repository", {"name": "a", "imageTagMutabilty": "IMMUTABLE"}, "imageTagMutabilty", "unknown property"),
        ("aws:ecr/repository:Repository", {"name": 3}, "name", "expected a string"),
        (
            "aws:ecr/repository:Repository",
            {"imageScanningConfiguration": {"scanOnPush": "yes"}},
            "imageScanningConfiguration.scanOnPush",
            "expected a boolean",
        ),
        (
            "aws:ecr/repository:Repository",
            {"encryptionConfigurations": [{"encryptionTyp": "KMS"}]},
            "encryptionConfigurations[0].encryptionTyp",
            "unknown property",
        ),
        ("aws:iam/role:Role", {"name": "r", "maxSessionDuration": 3600.5}, "maxSessionDuration", "expected an integer"),
        ("aws:iam/role:Role", {"name": "r", "maxSessionDuration": True}, "maxSessionDuration", "expected an integer"),
        ("aws:iam/user:User", {"name": "u", "tags": {"a": 1}}, "tags.a", "expected a string"),
        ("gitlab:index/userRunner:UserRunner", {"runnerType": "group_type", "tagList": ["a"]}, "tagList", "unknown property"),
        (
            "gitlab:index/projectVariable:ProjectVariable",
            {"project": "a/b", "key": "K", "value": "v", "masked": "true"},
            "masked",
            "expected a boolean",
        ),
    ],
)
def test_a_wrong_name_or_type_is_refused_with_its_path(token: str, inputs: dict[str, Any], path: str, reason: str) -> None:
    schema = AWS if token.startswith("aws:") else GITLAB
    failures = schema.check_resource(token, inputs)
    assert [p for p, _ in failures] == [path]
    assert reason in failures[0][1]


def test_unknowns_and_secrets_are_looked_through() -> None:
    inputs = {"name": UNKNOWN, "tags": {"a": secret("b")}, "forceDelete": secret(False)}
    assert AWS.check_resource("aws:ecr/repository:Repository", inputs) == []
    assert AWS.check_resource("aws:ecr/repository:Repository", {"forceDelete": secret("no")}) == [
        ("forceDelete", "expected a boolean, got 'no'")
    ]


def test_invoke_arguments_and_provider_config_are_checked() -> None:
    assert AWS.check_invoke("aws:iam/getOpenIdConnectProvider:getOpenIdConnectProvider", {"url": "https://gitlab.com"}) == []
    assert [p for p, _ in AWS.check_invoke("aws:iam/getOpenIdConnectProvider:getOpenIdConnectProvider", {"uri": "x"})] == ["uri"]
    assert AWS.check_config({"region": "eu-west-1", "defaultTags": '{"tags": {"a": "b"}}', "version": "7.51.1"}) == []
    assert [p for p, _ in AWS.check_config({"regoin": "eu-west-1"})] == ["regoin"]
    assert [p for p, _ in GITLAB.check_config({"baseUrl": "https://gitlab.com/api/v4", "insecure": "maybe"})] == ["insecure"]
