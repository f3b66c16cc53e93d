"""ECR repositories and IAM documents."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from common import json_document, resource_policy, stack_policy, to_plain_data
from iam_documents import (
    ECR_PULL_ACTIONS,
    ECR_REGISTRY_ACTIONS,
    resource_policy_problems,
    trust_problems,
    wildcard_action_problems,
    wildcard_resource_problems,
)
from marks import BUILD_CACHE_ROLE, REPOSITORY_ROLE_TAG
from pulumi_policy import PolicyConfigSchema, ReportViolation, ResourceValidationArgs, StackValidationArgs

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
# AWS-managed policies that grant (nearly) everything, in any partition (aws, aws-cn, aws-us-gov, ...).
ADMIN_POLICY = re.compile(r"arn:aws[a-z-]*:iam::aws:policy/(AdministratorAccess|PowerUserAccess|IAMFullAccess)", re.IGNORECASE)
MANAGED_POLICY_LISTS = {
    "aws:iam/user:User": "managedPolicyArns",
    "aws:iam/role:Role": "managedPolicyArns",
    "aws:iam/group:Group": "managedPolicyArns",
    "aws:iam/rolePolicyAttachmentsExclusive:RolePolicyAttachmentsExclusive": "policyArns",
    "aws:iam/userPolicyAttachmentsExclusive:UserPolicyAttachmentsExclusive": "policyArns",
    "aws:iam/groupPolicyAttachmentsExclusive:GroupPolicyAttachmentsExclusive": "policyArns",
}
REPOSITORY_POLICY = "aws:ecr/repositoryPolicy:RepositoryPolicy"
REGISTRY_POLICY = "aws:ecr/registryPolicy:RegistryPolicy"
ALLOWED_ARNS_KEY = "allowedManagedPolicyArns"


def _documents(args: ResourceValidationArgs) -> Iterator[tuple[str, Any]]:
    """(label, document) for every identity-policy document on the resource, inline policies included."""
    field = POLICY_DOCUMENT_TYPES.get(args.resource_type)
    if field is not None:
        yield "", json_document(args.props.get(field))
    if args.resource_type in ("aws:iam/user:User", "aws:iam/role:Role", "aws:iam/group:Group"):
        for inline in to_plain_data(args.props.get("inlinePolicies") or []):
            if isinstance(inline, dict) and inline.get("policy"):
                yield f"inline policy {inline.get('name')!r}: ", json_document(inline.get("policy"))


def _document_policy(check):
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        for label, document in _documents(args):
            for message in check(document):
                report_violation(label + message, None)

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


CACHE_TAG_FILTER = re.compile(r"cache-[A-Za-z0-9._-]*\*?")


def _immutable(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Only IMMUTABLE counts for a repository of images: IMMUTABLE_WITH_EXCLUSION makes the excluded tags
    mutable (a filter of '*' makes them all). The build-cache repository, marked by the stack, may be
    MUTABLE, or IMMUTABLE_WITH_EXCLUSION with filters that only reach its cache-* tags."""
    if args.resource_type != REPOSITORY:
        return
    name = str(args.props.get("name") or args.name)
    mutability = args.props.get("imageTagMutability") or "MUTABLE"
    filters = [str(f.get("filter")) for f in to_plain_data(args.props.get("imageTagMutabilityExclusionFilters") or [])]
    is_cache = (args.props.get("tags") or {}).get(REPOSITORY_ROLE_TAG) == BUILD_CACHE_ROLE
    if mutability == "IMMUTABLE":
        return
    if is_cache:
        wide = [f for f in filters if not CACHE_TAG_FILTER.fullmatch(f)]
        if mutability == "IMMUTABLE_WITH_EXCLUSION" and wide:
            report_violation(f"cache repository {name!r}: exclusion filters {wide} reach beyond its cache-* tags", None)
        return  # the declared exception: BuildKit overwrites its cache tag on every build
    if mutability == "IMMUTABLE_WITH_EXCLUSION":
        report_violation(
            f"repository {name!r} is IMMUTABLE_WITH_EXCLUSION ({filters}): the excluded tags can move; only the build-cache "
            f"repository (tagged {REPOSITORY_ROLE_TAG}={BUILD_CACHE_ROLE}) may exclude tags",
            None,
        )
        return
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
    for arn in _attached_arns(args.resource_type, args.props):
        if ADMIN_POLICY.fullmatch(arn):
            report_violation(f"attaches {arn}", None)


def _attached_arns(resource_type: str, props: Any) -> list[str]:
    if resource_type in ATTACHMENT_TYPES:
        return [str(props.get("policyArn"))]
    field = MANAGED_POLICY_LISTS.get(resource_type)
    return [str(arn) for arn in to_plain_data(props.get(field) or [])] if field else []


def _attachments_allow_listed(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    """Managed policies may be attached only when the stack creates them (so their documents pass the
    checks above) or the policy config allow-lists their exact ARN. An AWS-managed policy
    (arn:<partition>:iam::aws:policy/...) is never judged by content here, so it must be listed."""
    allowed = {str(a) for a in (args.get_config() or {}).get(ALLOWED_ARNS_KEY, [])}
    own = set()
    for r in args.resources:
        if r.resource_type == "aws:iam/policy:Policy":
            path = str(r.props.get("path") or "/")
            own.add(f":policy{path}{r.props.get('name') or r.name}")
    for r in args.resources:
        for arn in _attached_arns(r.resource_type, r.props):
            account_policy = re.fullmatch(r"arn:aws[a-z-]*:iam::[0-9]{12}(:policy/.+)", arn)
            if arn in allowed or (account_policy and account_policy[1] in own):
                continue
            report_violation(
                f"{r.resource_type.split(':')[-1]} {r.name} attaches {arn}, which is neither created by this stack nor in "
                f"the policy config's {ALLOWED_ARNS_KEY}",
                r.urn,
            )


def _oidc_trust(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type != "aws:iam/role:Role":
        return
    for message in trust_problems(json_document(args.props.get("assumeRolePolicy"))):
        report_violation(message, None)


def _ecr_resource_policies(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type == REPOSITORY_POLICY:
        problems = resource_policy_problems(json_document(args.props.get("policy")), ECR_PULL_ACTIONS, "repository policy")
    elif args.resource_type == REGISTRY_POLICY:
        problems = resource_policy_problems(json_document(args.props.get("policy")), ECR_REGISTRY_ACTIONS, "registry policy")
    else:
        return
    for message in problems:
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
            "Repositories must have IMMUTABLE tags; only the marked BuildKit cache repository may be mutable (or exclude cache-* tags).",
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
            "aws-ecr-resource-policies",
            "ECR repository policies may only let named principals pull; registry policies only let named principals replicate.",
            "Name exact principal ARNs and list exact pull (or replication) actions.",
            _ecr_resource_policies,
        ),
        resource_policy(
            "aws-iam-no-wildcard-actions",
            "IAM policies (managed and inline) must not allow '*' or '?' action patterns, or use NotAction.",
            "List exact actions.",
            _document_policy(wildcard_action_problems),
        ),
        resource_policy(
            "aws-iam-no-wildcard-resources",
            "Resource '*' only for ecr:GetAuthorizationToken; no wildcard ARNs (managed and inline policies).",
            "List exact ARNs.",
            _document_policy(wildcard_resource_problems),
        ),
        resource_policy(
            "aws-iam-no-admin",
            "No admin managed policy (any partition) is attached.",
            "Attach the least-privilege push policy only.",
            _no_admin,
        ),
        stack_policy(
            "aws-iam-attachments-allow-listed",
            "Managed policies are attached only when this stack creates them or the policy config allow-lists them.",
            f"Attach the stack's own policies, or list exact ARNs in {ALLOWED_ARNS_KEY}.",
            _attachments_allow_listed,
            config_schema=PolicyConfigSchema(properties={ALLOWED_ARNS_KEY: {"type": "array", "items": {"type": "string"}, "default": []}}),
        ),
        resource_policy(
            "aws-iam-oidc-trust-sub",
            "Trust policies name their principals; web-identity trust needs positive aud and sub conditions naming one project.",
            "Bind sub to project_path:<group>/<project>:ref_type:<type>:ref:<ref> with StringEquals, and aud with StringEquals.",
            _oidc_trust,
        ),
    ]
