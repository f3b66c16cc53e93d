"""Pure builders (and a validator) for the AWS JSON documents: IAM policies, trust policies, ECR lifecycle
and repository policies. Each returns a dict; callers serialise with :func:`to_json` once.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .config import Lifecycle, OidcSubject

# Ref: https://docs.aws.amazon.com/AmazonECR/latest/userguide/image-push-iam.html
# Push plus what cache import and ECR-hosted base images need (GetDownloadUrlForLayer). Nothing else.
PUSH_ACTIONS: tuple[str, ...] = (
    "ecr:BatchCheckLayerAvailability",
    "ecr:BatchGetImage",
    "ecr:CompleteLayerUpload",
    "ecr:GetDownloadUrlForLayer",
    "ecr:InitiateLayerUpload",
    "ecr:PutImage",
    "ecr:UploadLayerPart",
)
AUTH_ACTION = "ecr:GetAuthorizationToken"  # account-level: its only resource is "*"
PULL_ACTIONS: tuple[str, ...] = ("ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer")
CACHE_TAG_PREFIX = "cache-"


def to_json(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True)


def push_policy(repository_arns: Sequence[str]) -> dict[str, Any]:
    """Least-privilege push/pull on exactly these repositories, plus the registry login."""
    if not repository_arns:
        raise ValueError("push_policy needs at least one repository ARN")
    for arn in repository_arns:
        if "*" in arn or not arn.startswith("arn:") or ":repository/" not in arn:
            raise ValueError(f"not an exact ECR repository ARN: {arn!r}")
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "RegistryLogin", "Effect": "Allow", "Action": [AUTH_ACTION], "Resource": "*"},
            {
                "Sid": "PushPullListedRepositories",
                "Effect": "Allow",
                "Action": list(PUSH_ACTIONS),
                "Resource": sorted(repository_arns),
            },
        ],
    }


def oidc_subject(subject: OidcSubject) -> str:
    # Ref: https://docs.gitlab.com/ci/secrets/id_token_authentication/#token-payload
    return f"project_path:{subject.project_path}:ref_type:{subject.ref_type}:ref:{subject.ref}"


def gitlab_trust_policy(provider_arn: str, host: str, audience: str, subjects: Sequence[OidcSubject]) -> dict[str, Any]:
    """Trust for GitLab ID tokens: `aud` and `sub` both bound; StringLike only when a pattern is used."""
    if not subjects:
        raise ValueError("a GitLab trust policy needs at least one subject")
    subs = sorted({oidc_subject(s) for s in subjects})
    exact = [s for s in subs if "*" not in s]
    patterns = [s for s in subs if "*" in s]
    statements = []
    for operator, values in (("StringEquals", exact), ("StringLike", patterns)):
        if not values:
            continue
        condition: dict[str, Any] = {"StringEquals": {f"{host}:aud": audience}}
        condition.setdefault(operator, {})[f"{host}:sub"] = values
        statements.append(
            {
                "Sid": "GitLabExactRefs" if operator == "StringEquals" else "GitLabRefPatterns",
                "Effect": "Allow",
                "Principal": {"Federated": provider_arn},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": condition,
            }
        )
    return {"Version": "2012-10-17", "Statement": statements}


def pull_repository_policy(principals: Sequence[str]) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "CrossAccountPull",
                "Effect": "Allow",
                "Principal": {"AWS": sorted(principals)},
                "Action": list(PULL_ACTIONS),
            }
        ],
    }


# --- Lifecycle policies -------------------------------------------------------------------------


# Release images: kept by a rule of their own, which no lower-priority rule can then expire.
RELEASE_KEEP_COUNT = 10000


def application_lifecycle(lifecycle: Lifecycle) -> dict[str, Any]:
    """Release images are never expired by the count rule; untagged images expire after N days; of the
    rest, the newest M images stay.

    ECR: "an image that matches the tagging requirements of a higher priority rule cannot be expired by
    a rule with a lower priority". One rule per release pattern (a tagPatternList needs *all* its
    patterns to match), each keeping the newest RELEASE_KEEP_COUNT images it selects.
    Ref: https://docs.aws.amazon.com/AmazonECR/latest/userguide/LifecyclePolicies.html#lp_evaluation_rules
    """
    releases = [
        {
            "rulePriority": priority,
            "description": f"keep release images tagged {pattern} (the newest {RELEASE_KEEP_COUNT})",
            "selection": {
                "tagStatus": "tagged",
                "tagPatternList": [pattern],
                "countType": "imageCountMoreThan",
                "countNumber": RELEASE_KEEP_COUNT,
            },
            "action": {"type": "expire"},
        }
        for priority, pattern in enumerate(lifecycle.release_tag_patterns, start=1)
    ]
    first = len(releases) + 1
    return {
        "rules": [
            *releases,
            {
                "rulePriority": first,
                "description": f"expire untagged images after {lifecycle.untagged_expire_days} days",
                "selection": {
                    "tagStatus": "untagged",
                    "countType": "sinceImagePushed",
                    "countUnit": "days",
                    "countNumber": lifecycle.untagged_expire_days,
                },
                "action": {"type": "expire"},
            },
            {
                "rulePriority": first + 1,
                "description": f"keep the newest {lifecycle.keep_tagged_count} other images",
                "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": lifecycle.keep_tagged_count},
                "action": {"type": "expire"},
            },
        ]
    }


def cache_lifecycle(lifecycle: Lifecycle) -> dict[str, Any]:
    """Cache manifests are overwritten each build: expire what no build has refreshed for N days."""
    days = lifecycle.cache_expire_days
    return {
        "rules": [
            {
                "rulePriority": 1,
                "description": f"expire untagged cache layers after {days} days",
                "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days", "countNumber": days},
                "action": {"type": "expire"},
            },
            {
                "rulePriority": 2,
                "description": f"expire cache tags not pushed for {days} days",
                "selection": {
                    "tagStatus": "tagged",
                    "tagPatternList": [f"{CACHE_TAG_PREFIX}*"],
                    "countType": "sinceImagePushed",
                    "countUnit": "days",
                    "countNumber": days,
                },
                "action": {"type": "expire"},
            },
        ]
    }


_TIME_COUNT_TYPES = {"sinceImagePushed", "sinceImagePulled", "sinceImageTransitioned"}
_COUNT_TYPES = _TIME_COUNT_TYPES | {"imageCountMoreThan"}
_TAG_STATUSES = {"tagged", "untagged", "any"}


def validate_lifecycle(policy: dict[str, Any]) -> list[str]:
    """Problems with a lifecycle policy, checked against the documented ECR rules; [] when valid.

    Ref: https://docs.aws.amazon.com/AmazonECR/latest/userguide/lifecycle_policy_parameters.html
    (moto and the provider accept several of these mistakes; the ECR API rejects them at apply time.)
    """
    problems: list[str] = []
    rules = policy.get("rules")
    if not isinstance(rules, list) or not rules:
        return ["'rules' must be a non-empty list"]
    priorities: list[int] = []
    any_priorities: list[int] = []
    for index, rule in enumerate(rules):
        where = f"rules[{index}]"
        priority = rule.get("rulePriority")
        if not isinstance(priority, int) or isinstance(priority, bool) or priority < 1:
            problems.append(f"{where}.rulePriority must be an integer >= 1, got {priority!r}")
        else:
            priorities.append(priority)
        selection = rule.get("selection", {})
        status = selection.get("tagStatus")
        if status not in _TAG_STATUSES:
            problems.append(f"{where}.selection.tagStatus must be one of {sorted(_TAG_STATUSES)}, got {status!r}")
        has_lists = bool(selection.get("tagPatternList") or selection.get("tagPrefixList"))
        if status == "tagged" and not has_lists:
            problems.append(f"{where}: tagStatus 'tagged' needs tagPatternList or tagPrefixList")
        if status != "tagged" and has_lists:
            problems.append(f"{where}: tagPatternList/tagPrefixList are only allowed with tagStatus 'tagged'")
        if selection.get("tagPatternList") and selection.get("tagPrefixList"):
            problems.append(f"{where}: use tagPatternList or tagPrefixList, not both")
        if status == "any" and isinstance(priority, int):
            any_priorities.append(priority)
        count_type = selection.get("countType")
        if count_type not in _COUNT_TYPES:
            problems.append(f"{where}.selection.countType must be one of {sorted(_COUNT_TYPES)}, got {count_type!r}")
        elif count_type in _TIME_COUNT_TYPES and selection.get("countUnit") != "days":
            problems.append(f"{where}: countType {count_type!r} needs countUnit 'days'")
        elif count_type == "imageCountMoreThan" and "countUnit" in selection:
            problems.append(f"{where}: countUnit is not allowed with countType 'imageCountMoreThan'")
        count = selection.get("countNumber")
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            problems.append(f"{where}.selection.countNumber must be an integer >= 1, got {count!r}")
        if rule.get("action", {}).get("type") != "expire":
            problems.append(f"{where}.action.type must be 'expire'")
    duplicates = sorted({p for p in priorities if priorities.count(p) > 1})
    if duplicates:
        problems.append(f"rulePriority values must be unique, duplicated: {duplicates}")
    if len(any_priorities) > 1:
        problems.append("only one rule may have tagStatus 'any'")
    if any_priorities and priorities and max(any_priorities) != max(priorities):
        problems.append("the tagStatus 'any' rule must have the highest rulePriority")
    return problems


# --- The read-only preview identity ----------------------------------------------------------------

# What `pulumi preview --refresh` of this stack reads, and nothing that writes.
# Ref: https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonelasticcontainerregistry.html
# Ref: https://docs.aws.amazon.com/service-authorization/latest/reference/list_awsidentityandaccessmanagementiam.html
PREVIEW_ECR_ACTIONS: tuple[str, ...] = (
    "ecr:DescribeRepositories",
    "ecr:GetLifecyclePolicy",
    "ecr:GetRepositoryPolicy",
    "ecr:ListTagsForResource",
)
# Read actions per IAM resource type (each action applies to one ARN format only).
PREVIEW_IAM_ACTIONS: dict[str, tuple[str, ...]] = {
    "user": ("iam:GetUser", "iam:ListAccessKeys", "iam:ListAttachedUserPolicies", "iam:ListUserPolicies"),
    "role": ("iam:GetRole", "iam:ListAttachedRolePolicies", "iam:ListRolePolicies"),
    "policy": ("iam:GetPolicy", "iam:GetPolicyVersion", "iam:ListPolicyVersions"),
    "oidc-provider": ("iam:GetOpenIDConnectProvider",),
}


def preview_state_statements(partition: str, bucket: str, project: str, stack: str, key_arn: str | None) -> list[dict[str, Any]]:
    """What `pulumi login s3://<bucket>`, `stack select` and `preview` read in Pulumi's DIY backend: the
    backend's meta.yaml and this stack's checkpoint (plain or gzipped), a listing of the stack
    folder, and kms:Decrypt with the stack's awskms:// key. A preview takes no lock and writes nothing.
    Ref: https://github.com/pulumi/pulumi/blob/v3.274.0/pkg/backend/diy/backend.go (Preview: no b.Lock)
    """
    stacks = f".pulumi/stacks/{project}/"
    statements: list[dict[str, Any]] = [
        {
            "Sid": "ReadStackState",
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": [f"arn:{partition}:s3:::{bucket}/.pulumi/meta.yaml"]
            + [f"arn:{partition}:s3:::{bucket}/{stacks}{stack}{suffix}" for suffix in (".json", ".json.gz")],
        },
        {
            "Sid": "ListStackState",
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": [f"arn:{partition}:s3:::{bucket}"],
            "Condition": {"StringLike": {"s3:prefix": [".pulumi/meta.yaml", f"{stacks}*"]}},
        },
    ]
    if key_arn:
        statements.append({"Sid": "DecryptStackSecrets", "Effect": "Allow", "Action": ["kms:Decrypt"], "Resource": [key_arn]})
    return statements


def preview_read_policy(
    repository_arns: Sequence[str], iam_arns: dict[str, Sequence[str]], state_statements: Sequence[dict[str, Any]] = ()
) -> dict[str, Any]:
    """Read-only on exactly the stack's repositories and IAM resources (by type: user, role, policy,
    oidc-provider), and on the stack's own state: no write, no image access."""
    if not repository_arns:
        raise ValueError("preview_read_policy needs the stack's repositories")
    for arn in [*repository_arns, *(a for arns in iam_arns.values() for a in arns)]:
        if "*" in arn or "?" in arn or not arn.startswith("arn:"):
            raise ValueError(f"not an exact ARN: {arn!r}")
    statements = [{"Sid": "ReadRepositories", "Effect": "Allow", "Action": list(PREVIEW_ECR_ACTIONS), "Resource": sorted(repository_arns)}]
    for kind, actions in PREVIEW_IAM_ACTIONS.items():
        arns = iam_arns.get(kind) or []
        if arns:
            sid = "Read" + "".join(part.capitalize() for part in kind.split("-")) + "s"
            statements.append({"Sid": sid, "Effect": "Allow", "Action": list(actions), "Resource": sorted(arns)})
    statements += [dict(statement) for statement in state_statements]
    return {"Version": "2012-10-17", "Statement": statements}
