"""IAM, trust and lifecycle documents: exact contents, each validation rule failing, real validators."""

from __future__ import annotations

import copy
import json

import pytest

from components.aws_documents import (
    AUTH_ACTION,
    application_lifecycle,
    cache_lifecycle,
    gitlab_trust_policy,
    pull_repository_policy,
    push_policy,
    to_json,
    validate_lifecycle,
)
from components.config import Lifecycle, OidcSubject
from verify.iam_checks import parliament_problems, sentry_problems

ARNS = [
    "arn:aws:ecr:eu-west-1:123456789012:repository/acme/web",
    "arn:aws:ecr:eu-west-1:123456789012:repository/acme/buildkit-cache",
]


def test_push_policy_exact_actions_and_resources() -> None:
    doc = json.loads(to_json(push_policy(ARNS)))
    login, push = doc["Statement"]
    assert login == {"Sid": "RegistryLogin", "Effect": "Allow", "Action": ["ecr:GetAuthorizationToken"], "Resource": "*"}
    assert push["Effect"] == "Allow"
    assert sorted(push["Action"]) == [
        "ecr:BatchCheckLayerAvailability",
        "ecr:BatchGetImage",
        "ecr:CompleteLayerUpload",
        "ecr:GetDownloadUrlForLayer",
        "ecr:InitiateLayerUpload",
        "ecr:PutImage",
        "ecr:UploadLayerPart",
    ]
    assert push["Resource"] == sorted(ARNS)
    every_action = [a for s in doc["Statement"] for a in s["Action"]]
    assert not [a for a in every_action if "*" in a]
    assert "ecr:DeleteRepository" not in every_action and "ecr:CreateRepository" not in every_action


@pytest.mark.parametrize("bad", ["*", "arn:aws:ecr:eu-west-1:123456789012:repository/*", "acme/web", "arn:aws:s3:::bucket"])
def test_push_policy_refuses_anything_but_exact_repository_arns(bad: str) -> None:
    with pytest.raises(ValueError):
        push_policy([ARNS[0], bad])


def test_push_policy_needs_a_repository() -> None:
    with pytest.raises(ValueError):
        push_policy([])


def test_push_policy_passes_policy_sentry_and_parliament() -> None:
    doc = push_policy(ARNS)
    assert sentry_problems(doc) == []
    assert parliament_problems(doc) == []


def test_real_validators_catch_broken_documents() -> None:
    """The validators are not rubber stamps: an unknown action, a misplaced resource, a wildcard."""
    broken = copy.deepcopy(push_policy(ARNS))
    broken["Statement"][1]["Action"].append("ecr:PushEverything")
    assert any("ecr:PushEverything is not a known IAM action" in p for p in sentry_problems(broken))
    misplaced = copy.deepcopy(push_policy(ARNS))
    misplaced["Statement"][0]["Action"] = [AUTH_ACTION, "ecr:PutImage"]
    assert any("ecr:PutImage is resource-level" in p for p in sentry_problems(misplaced))
    wrong_arn = copy.deepcopy(push_policy(ARNS))
    wrong_arn["Statement"][1]["Resource"] = ["arn:aws:s3:::bucket"]
    assert any("does not apply to arn:aws:s3:::bucket" in p for p in sentry_problems(wrong_arn))
    star = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
    assert parliament_problems(star) != []


def test_trust_policy_binds_aud_and_sub_with_string_like_only_for_patterns() -> None:
    subjects = [
        OidcSubject(project_path="acme/web", ref="main"),
        OidcSubject(project_path="acme/api", ref_type="tag", ref="v*"),
    ]
    doc = gitlab_trust_policy(
        "arn:aws:iam::123456789012:oidc-provider/gitlab.example.com", "gitlab.example.com", "https://gitlab.example.com", subjects
    )
    exact, patterns = doc["Statement"]
    assert exact["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert exact["Principal"] == {"Federated": "arn:aws:iam::123456789012:oidc-provider/gitlab.example.com"}
    assert exact["Condition"] == {
        "StringEquals": {
            "gitlab.example.com:aud": "https://gitlab.example.com",
            "gitlab.example.com:sub": ["project_path:acme/web:ref_type:branch:ref:main"],
        }
    }
    assert patterns["Condition"] == {
        "StringEquals": {"gitlab.example.com:aud": "https://gitlab.example.com"},
        "StringLike": {"gitlab.example.com:sub": ["project_path:acme/api:ref_type:tag:ref:v*"]},
    }


def test_trust_policy_without_patterns_has_no_string_like() -> None:
    doc = gitlab_trust_policy("arn:p", "h", "https://h", [OidcSubject(project_path="a/b", ref="main")])
    assert len(doc["Statement"]) == 1
    assert "StringLike" not in json.dumps(doc)
    with pytest.raises(ValueError):
        gitlab_trust_policy("arn:p", "h", "https://h", [])


def test_pull_repository_policy() -> None:
    doc = pull_repository_policy(["arn:aws:iam::210987654321:root"])
    (statement,) = doc["Statement"]
    assert statement["Principal"] == {"AWS": ["arn:aws:iam::210987654321:root"]}
    assert statement["Action"] == ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]


def test_default_lifecycles_are_valid_and_exact() -> None:
    life = Lifecycle(untagged_expire_days=3, keep_tagged_count=20, cache_expire_days=9)
    app = application_lifecycle(life)
    assert validate_lifecycle(app) == []
    release_v, release_dot, untagged, keep = app["rules"]
    # Releases first: no lower-priority rule may then expire them (ECR's evaluation rules).
    for rule, pattern, priority in ((release_v, "v*", 1), (release_dot, "*.*", 2)):
        assert rule["rulePriority"] == priority
        assert rule["selection"] == {
            "tagStatus": "tagged",
            "tagPatternList": [pattern],
            "countType": "imageCountMoreThan",
            "countNumber": 10000,
        }
    assert (untagged["rulePriority"], keep["rulePriority"]) == (3, 4)
    assert untagged["selection"] == {"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 3}
    assert keep["selection"] == {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 20}
    cache = cache_lifecycle(life)
    assert validate_lifecycle(cache) == []
    assert cache["rules"][1]["selection"]["tagPatternList"] == ["cache-*"]
    assert {r["selection"]["countNumber"] for r in cache["rules"]} == {9}


def _rule(**selection: object) -> dict:
    base = {"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 1}
    return {"rulePriority": 1, "selection": {**base, **selection}, "action": {"type": "expire"}}


@pytest.mark.parametrize(
    ("rules", "problem"),
    [
        ([_rule(), _rule()], "rulePriority values must be unique, duplicated: [1]"),
        ([{**_rule(), "rulePriority": 0}], "rules[0].rulePriority must be an integer >= 1, got 0"),
        ([_rule(tagStatus="tagged")], "rules[0]: tagStatus 'tagged' needs tagPatternList or tagPrefixList"),
        ([_rule(tagPrefixList=["v"])], "rules[0]: tagPatternList/tagPrefixList are only allowed with tagStatus 'tagged'"),
        ([_rule(tagStatus="tagged", tagPrefixList=["v"], tagPatternList=["v*"])], "use tagPatternList or tagPrefixList, not both"),
        (
            [{**_rule(tagStatus="any"), "rulePriority": 2}, {**_rule(), "rulePriority": 3}],
            "the tagStatus 'any' rule must have the highest rulePriority",
        ),
        (
            [{**_rule(tagStatus="any"), "rulePriority": 1}, {**_rule(tagStatus="any"), "rulePriority": 2}],
            "only one rule may have tagStatus 'any'",
        ),
        ([_rule(countUnit=None)], "rules[0]: countType 'sinceImagePushed' needs countUnit 'days'"),
        ([_rule(countType="imageCountMoreThan")], "rules[0]: countUnit is not allowed with countType 'imageCountMoreThan'"),
        ([_rule(countNumber=0)], "rules[0].selection.countNumber must be an integer >= 1, got 0"),
        ([_rule(countType="sometimes")], "rules[0].selection.countType must be one of"),
        ([_rule(tagStatus="maybe")], "rules[0].selection.tagStatus must be one of"),
        ([{**_rule(), "action": {"type": "archive"}}], "rules[0].action.type must be 'expire'"),
        ([], "'rules' must be a non-empty list"),
    ],
)
def test_each_lifecycle_rule_has_a_failing_case(rules: list, problem: str) -> None:
    for rule in rules:
        rule["selection"] = {k: v for k, v in rule.get("selection", {}).items() if v is not None}
    problems = validate_lifecycle({"rules": rules})
    assert any(problem in p for p in problems), problems
