"""ECR repositories and IAM documents."""

from __future__ import annotations

from typing import Any

from common import json_document, resource_policy, stack_policy, to_plain_data
from marks import BUILD_CACHE_ROLE, REPOSITORY_ROLE_TAG
from pulumi_policy import ReportViolation, ResourceValidationArgs, StackValidationArgs

REPOSITORY = "aws:ecr/repository:Repository"
LIFECYCLE = "aws:ecr/lifecyclePolicy:LifecyclePolicy"
POLICY_DOCUMENT_TYPES = {
    "aws:iam/policy:Policy": "policy",
    "aws:iam/userPolicy:UserPolicy": "policy",
    "aws:iam/rolePolicy:RolePolicy": "policy",
    "aws:iam/groupPolicy:GroupPolicy": "policy",
}
ATTACHMENT_TYPES = (
    "aws:iam/userPolicyAttachment:UserPolicyAttachment",
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
    "aws:iam/groupPolicyAttachment:GroupPolicyAttachment",
    "aws:iam/policyAttachment:PolicyAttachment",
)
ADMIN_POLICY_ARNS = (
    "arn:aws:iam::aws:policy/AdministratorAccess",
    "arn:aws:iam::aws:policy/PowerUserAccess",
    "arn:aws:iam::aws:policy/IAMFullAccess",
)
# Actions whose only resource is "*" (account-level).
# Ref: https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonelasticcontainerregistry.html
ACCOUNT_LEVEL_ACTIONS = frozenset({"ecr:getauthorizationtoken"})


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def statements(document: Any) -> list[dict[str, Any]]:
    return [s for s in _as_list((document or {}).get("Statement")) if isinstance(s, dict)]


def wildcard_action_problems(document: Any) -> list[str]:
    problems = []
    for i, st in enumerate(statements(document)):
        if st.get("Effect") != "Allow":
            continue
        if "NotAction" in st:
            problems.append(f"Statement[{i}] uses NotAction (allows everything else)")
        for action in _as_list(st.get("Action")):
            if "*" in str(action):
                problems.append(f"Statement[{i}] allows wildcard action {action!r}")
    return problems


def wildcard_resource_problems(document: Any) -> list[str]:
    problems = []
    for i, st in enumerate(statements(document)):
        if st.get("Effect") != "Allow":
            continue
        if "NotResource" in st:
            problems.append(f"Statement[{i}] uses NotResource")
        resources = [str(r) for r in _as_list(st.get("Resource"))]
        actions = {str(a).lower() for a in _as_list(st.get("Action"))}
        if "*" in resources and not actions <= ACCOUNT_LEVEL_ACTIONS:
            problems.append(f"Statement[{i}] allows {sorted(actions)} on Resource '*' (only ecr:GetAuthorizationToken may)")
        for r in resources:
            if r != "*" and "*" in r:
                problems.append(f"Statement[{i}] uses wildcard resource {r!r}")
    return problems


def trust_problems(document: Any) -> list[str]:
    problems = []
    for i, st in enumerate(statements(document)):
        actions = {str(a) for a in _as_list(st.get("Action"))}
        if st.get("Effect") != "Allow" or "sts:AssumeRoleWithWebIdentity" not in actions:
            continue
        conditions = st.get("Condition") or {}
        keys = {key for block in conditions.values() if isinstance(block, dict) for key in block}
        if not any(k.endswith(":sub") for k in keys):
            problems.append(f"Statement[{i}] trusts web identities without a condition on ':sub'")
        if not any(k.endswith(":aud") for k in keys):
            problems.append(f"Statement[{i}] trusts web identities without a condition on ':aud'")
        for operator, block in conditions.items():
            for key, values in block.items() if isinstance(block, dict) else []:
                if key.endswith(":sub") and operator.startswith("StringEquals") and any("*" in str(v) for v in _as_list(values)):
                    problems.append(f"Statement[{i}] uses a '*' pattern in {operator} (needs StringLike)")
                if key.endswith(":sub") and any(str(v) in ("*", "project_path:*") for v in _as_list(values)):
                    problems.append(f"Statement[{i}] lets any project assume the role ({values})")
    return problems


def _document_policy(check):
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        field = POLICY_DOCUMENT_TYPES.get(args.resource_type)
        if field is None:
            return
        for message in check(json_document(args.props.get(field))):
            report_violation(message, None)

    return validate


def _scan_on_push(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type == REPOSITORY and (args.props.get("imageScanningConfiguration") or {}).get("scanOnPush") is not True:
        report_violation(f"repository {args.props.get('name')!r} does not scan on push", None)


def _encryption(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type != REPOSITORY:
        return
    configs = list(args.props.get("encryptionConfigurations") or [])
    types = [c.get("encryptionType") for c in configs]
    if not types or any(t not in ("AES256", "KMS") for t in types):
        report_violation(f"repository {args.props.get('name')!r} has no explicit AES256/KMS encryption ({types})", None)
    for c in configs:
        if c.get("encryptionType") == "KMS" and not c.get("kmsKey"):
            report_violation(f"repository {args.props.get('name')!r} uses KMS without a key", None)


def _immutable(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type != REPOSITORY:
        return
    name = str(args.props.get("name") or args.name)
    mutability = args.props.get("imageTagMutability") or "MUTABLE"
    if mutability in ("IMMUTABLE", "IMMUTABLE_WITH_EXCLUSION"):
        return
    if (args.props.get("tags") or {}).get(REPOSITORY_ROLE_TAG) == BUILD_CACHE_ROLE:
        return  # the declared exception, marked by the stack: BuildKit overwrites its cache tag on every build
    report_violation(
        f"repository {name!r} has mutable tags ({mutability}) and is not tagged {REPOSITORY_ROLE_TAG}={BUILD_CACHE_ROLE}; "
        "release tags must never move",
        None,
    )


def _lifecycle_attached(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    with_policy = {str(r.props.get("repository")) for r in args.resources if r.resource_type == LIFECYCLE}
    for r in args.resources:
        if r.resource_type == REPOSITORY:
            name = str(r.props.get("name") or r.name)
            if name not in with_policy:
                report_violation(f"repository {name!r} has no lifecycle policy", r.urn)


def _no_admin(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type in ATTACHMENT_TYPES:
        arn = str(args.props.get("policyArn"))
        if arn in ADMIN_POLICY_ARNS:
            report_violation(f"attaches {arn}", None)
    if args.resource_type in ("aws:iam/user:User", "aws:iam/role:Role"):
        for arn in to_plain_data(args.props.get("managedPolicyArns") or []):
            if arn in ADMIN_POLICY_ARNS:
                report_violation(f"attaches {arn}", None)
        for inline in to_plain_data(args.props.get("inlinePolicies") or []):
            doc = json_document(inline.get("policy")) if isinstance(inline, dict) else None
            if doc and wildcard_action_problems(doc):
                report_violation(f"inline policy {inline.get('name')!r}: " + "; ".join(wildcard_action_problems(doc)), None)


def _oidc_trust(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type != "aws:iam/role:Role":
        return
    for message in trust_problems(json_document(args.props.get("assumeRolePolicy"))):
        report_violation(message, None)


def policies() -> list:
    return [
        resource_policy(
            "aws-ecr-scan-on-push",
            "ECR repositories must scan images on push.",
            "Set imageScanningConfiguration.scanOnPush: true.",
            _scan_on_push,
        ),
        resource_policy(
            "aws-ecr-encryption", "ECR repositories must declare AES256 or KMS encryption.", "Set encryptionConfigurations.", _encryption
        ),
        resource_policy(
            "aws-ecr-immutable-tags",
            "Application repositories must have immutable tags; the BuildKit cache repository is the declared exception.",
            f"Set imageTagMutability: IMMUTABLE (only the build-cache repository, tagged {REPOSITORY_ROLE_TAG}={BUILD_CACHE_ROLE}, may be mutable).",
            _immutable,
        ),
        stack_policy(
            "aws-ecr-lifecycle-policy",
            "Every ECR repository must have a lifecycle policy.",
            "Attach an aws.ecr.LifecyclePolicy.",
            _lifecycle_attached,
        ),
        resource_policy(
            "aws-iam-no-wildcard-actions",
            "IAM policies must not allow '*' or service:* actions, or use NotAction.",
            "List exact actions.",
            _document_policy(wildcard_action_problems),
        ),
        resource_policy(
            "aws-iam-no-wildcard-resources",
            "Resource '*' only for ecr:GetAuthorizationToken; no wildcard ARNs.",
            "List exact ARNs.",
            _document_policy(wildcard_resource_problems),
        ),
        resource_policy(
            "aws-iam-no-admin",
            "No admin managed policies and no wildcard inline policies.",
            "Attach the least-privilege push policy only.",
            _no_admin,
        ),
        resource_policy(
            "aws-iam-oidc-trust-sub",
            "Web-identity trust must constrain both aud and sub; wildcards only with StringLike.",
            "Bind sub to project_path:<group>/<project>:ref_type:<type>:ref:<ref>.",
            _oidc_trust,
        ),
    ]
