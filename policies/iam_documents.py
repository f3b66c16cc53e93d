"""IAM and ECR policy documents read the way AWS evaluates them.

Action names and condition keys are case-insensitive; action patterns use `*` (any run of characters)
and `?` (one character). So `iam:Pass????` grants iam:PassRole and `sts:assumerolewithwebidentity`
is the web-identity action. A check that compares strings, or looks only for `*`, misses both.
Ref: https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_action.html
Ref: https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

WEB_IDENTITY = "sts:AssumeRoleWithWebIdentity"
# Actions whose only resource is "*" (account-level).
# Ref: https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonelasticcontainerregistry.html
ACCOUNT_LEVEL_ACTIONS = ("ecr:GetAuthorizationToken",)
# What an ECR repository policy may grant another principal: pulling.
ECR_PULL_ACTIONS = ("ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability", "ecr:DescribeImages")
# What a registry policy may grant: replication into this registry.
# Ref: https://docs.aws.amazon.com/AmazonECR/latest/userguide/registry-permissions.html
ECR_REGISTRY_ACTIONS = ("ecr:ReplicateImage", "ecr:CreateRepository", "ecr:BatchImportUpstreamImage")
# Condition operators that constrain a key to values (a missing key fails them). Negated operators,
# `...IfExists`, `Null` and `ForAllValues:` (true for a missing key) do not constrain.
POSITIVE_STRING_OPERATORS = frozenset({"stringequals", "stringlike", "foranyvalue:stringequals", "foranyvalue:stringlike"})
EXACT_STRING_OPERATORS = frozenset({"stringequals", "foranyvalue:stringequals"})
# A GitLab ID token `sub`: project_path:<group>/<project>:ref_type:<branch|tag>:ref:<ref>.
# Ref: https://docs.gitlab.com/ci/secrets/id_token_authentication/#token-payload
GITLAB_SUB = re.compile(r"project_path:(?P<path>[^:]+):ref_type:(?P<type>branch|tag):ref:(?P<ref>.+)")


@lru_cache(maxsize=4096)
def _pattern(glob: str) -> re.Pattern[str]:
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in glob), re.IGNORECASE | re.DOTALL)


def iam_matches(pattern: str, value: str) -> bool:
    """Does the IAM pattern (`*`, `?`, case-insensitive) match the value?"""
    return _pattern(str(pattern)).fullmatch(str(value)) is not None


def has_wildcard(value: Any) -> bool:
    return "*" in str(value) or "?" in str(value)


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def statements(document: Any) -> list[dict[str, Any]]:
    statement = (document or {}).get("Statement") if isinstance(document, dict) else None
    return [s for s in as_list(statement) if isinstance(s, dict)]


def _allows(statement: dict[str, Any]) -> bool:
    return str(statement.get("Effect", "")).lower() == "allow"


def grants(statement: dict[str, Any], action: str) -> bool:
    """Would this Allow statement's Action (or NotAction) cover `action`?"""
    if "NotAction" in statement:
        return not any(iam_matches(a, action) for a in as_list(statement["NotAction"]))
    return any(iam_matches(a, action) for a in as_list(statement.get("Action")))


def wildcard_action_problems(document: Any) -> list[str]:
    problems = []
    for i, st in enumerate(statements(document)):
        if not _allows(st):
            continue
        if "NotAction" in st:
            problems.append(f"Statement[{i}] uses NotAction (allows everything else)")
        for action in as_list(st.get("Action")):
            if has_wildcard(action):
                problems.append(f"Statement[{i}] allows wildcard action {action!r}")
    return problems


def wildcard_resource_problems(document: Any) -> list[str]:
    problems = []
    for i, st in enumerate(statements(document)):
        if not _allows(st):
            continue
        if "NotResource" in st:
            problems.append(f"Statement[{i}] uses NotResource")
        resources = [str(r) for r in as_list(st.get("Resource"))]
        actions = [str(a) for a in as_list(st.get("Action"))]
        account_level_only = (
            bool(actions)
            and "NotAction" not in st
            and all(not has_wildcard(a) and any(a.lower() == allowed.lower() for allowed in ACCOUNT_LEVEL_ACTIONS) for a in actions)
        )
        if "*" in resources and not account_level_only:
            problems.append(f"Statement[{i}] allows {actions or 'NotAction'} on Resource '*' (only ecr:GetAuthorizationToken may)")
        for r in resources:
            if r != "*" and has_wildcard(r):
                problems.append(f"Statement[{i}] uses wildcard resource {r!r}")
    return problems


def _principals(statement: dict[str, Any]) -> list[str]:
    principal = statement.get("Principal")
    if isinstance(principal, dict):
        return [str(p) for values in principal.values() for p in as_list(values)]
    return [str(p) for p in as_list(principal)]


def _conditions(statement: dict[str, Any]) -> list[tuple[str, str, list[str]]]:
    """(operator, key, values), both lower-cased as IAM compares them."""
    found = []
    for operator, block in (statement.get("Condition") or {}).items():
        if isinstance(block, dict):
            for key, values in block.items():
                found.append((str(operator).lower(), str(key).lower(), [str(v) for v in as_list(values)]))
    return found


def principal_problems(document: Any, label: str) -> list[str]:
    """Allow statements must name their principals: no '*', no wildcard ARNs, no NotPrincipal."""
    problems = []
    for i, st in enumerate(statements(document)):
        if not _allows(st):
            continue
        if "NotPrincipal" in st:
            problems.append(f"{label} Statement[{i}] allows NotPrincipal (everyone else)")
        for principal in _principals(st):
            if has_wildcard(principal):
                problems.append(f"{label} Statement[{i}] allows the principal {principal!r} (anyone)")
    return problems


def trust_problems(document: Any) -> list[str]:
    """A role's trust policy: named principals; web-identity trust bound by positive aud and sub conditions,
    sub naming one project exactly (a wildcard only inside the ref, with StringLike)."""
    problems = principal_problems(document, "trust")
    projects: dict[str, list[int]] = {}  # project path -> statements naming it
    for i, st in enumerate(statements(document)):
        if not _allows(st) or not grants(st, WEB_IDENTITY):
            continue
        conditions = _conditions(st)
        subs = [(op, values) for op, key, values in conditions if key.endswith(":sub") and op in POSITIVE_STRING_OPERATORS]
        auds = [(op, values) for op, key, values in conditions if key.endswith(":aud") and op in EXACT_STRING_OPERATORS]
        if not subs:
            problems.append(f"Statement[{i}] trusts web identities without a positive condition on ':sub' (StringEquals/StringLike)")
        if not auds:
            problems.append(f"Statement[{i}] trusts web identities without a StringEquals condition on ':aud'")
        for operator, values in subs:
            for value in values:
                match = GITLAB_SUB.fullmatch(value)
                if match:
                    projects.setdefault(match["path"], []).append(i)
                if operator in EXACT_STRING_OPERATORS and has_wildcard(value):
                    problems.append(f"Statement[{i}] uses a wildcard in {operator} on ':sub' ({value!r}; it needs StringLike)")
                elif not match or has_wildcard(match["path"]) or has_wildcard(match["type"]):
                    problems.append(
                        f"Statement[{i}] lets more than one project assume the role (':sub' {value!r} must be "
                        "project_path:<group>/<project>:ref_type:<branch|tag>:ref:<ref> with no wildcard before ':ref:')"
                    )
        for _, values in auds:
            for value in values:
                if has_wildcard(value):
                    problems.append(f"Statement[{i}] uses a wildcard audience {value!r}")
    if len(projects) > 1:
        # Values of one condition, and statements, are alternatives: any project named can assume the role.
        named = ", ".join(f"{path!r} (Statement{sorted(set(where))})" for path, where in sorted(projects.items()))
        problems.append(
            f"the trust names {len(projects)} projects: {named}; one role per project, so one project's job cannot push as another's"
        )
    return problems


def resource_policy_problems(document: Any, allowed_actions: tuple[str, ...], label: str) -> list[str]:
    """An ECR repository or registry policy: named principals, and only `allowed_actions`."""
    problems = principal_problems(document, label)
    for i, st in enumerate(statements(document)):
        if not _allows(st):
            continue
        if "NotAction" in st:
            problems.append(f"{label} Statement[{i}] uses NotAction")
        for action in as_list(st.get("Action")):
            if has_wildcard(action):
                problems.append(f"{label} Statement[{i}] uses the wildcard action {action!r} (list exact actions)")
            elif not any(str(action).lower() == allowed.lower() for allowed in allowed_actions):
                problems.append(f"{label} Statement[{i}] allows {action!r} (only {', '.join(allowed_actions)})")
    return problems
