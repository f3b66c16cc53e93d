"""Namespaces carry pinned PSA labels; RBAC created by the stack has no wildcards and no cluster-admin."""

from __future__ import annotations

import re

from common import resource_policy
from marks import JOB_SECURITY_MODE_ANNOTATION, PSA_LABEL_PREFIX
from pulumi_policy import ReportViolation, ResourceValidationArgs

LEVELS = ("privileged", "baseline", "restricted")
PINNED_VERSION = re.compile(r"^v1\.[0-9]+$")
ROLE_TYPES = ("kubernetes:rbac.authorization.k8s.io/v1:Role", "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole")
BINDING_TYPES = ("kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding", "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding")


def _namespace_labels(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type != "kubernetes:core/v1:Namespace":
        return
    meta = args.props.get("metadata") or {}
    labels = meta.get("labels") or {}
    enforce = labels.get(f"{PSA_LABEL_PREFIX}/enforce")
    if enforce not in LEVELS:
        report_violation(
            f"namespace {meta.get('name')!r}: label {PSA_LABEL_PREFIX}/enforce must be one of {list(LEVELS)} (is {enforce!r})", None
        )
    version = labels.get(f"{PSA_LABEL_PREFIX}/enforce-version")
    if not PINNED_VERSION.match(str(version or "")):
        report_violation(
            f"namespace {meta.get('name')!r}: label {PSA_LABEL_PREFIX}/enforce-version must pin a version like v1.33 (is {version!r})", None
        )


def _privileged_only_acknowledged(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type != "kubernetes:core/v1:Namespace":
        return
    meta = args.props.get("metadata") or {}
    if (meta.get("labels") or {}).get(f"{PSA_LABEL_PREFIX}/enforce") != "privileged":
        return
    if (meta.get("annotations") or {}).get(JOB_SECURITY_MODE_ANNOTATION) != "unconfined":
        report_violation(
            f"namespace {meta.get('name')!r} enforces PSA 'privileged' without the acknowledged "
            f"unconfined job security mode (annotation {JOB_SECURITY_MODE_ANNOTATION}=unconfined)",
            None,
        )


def _no_wildcards(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type not in ROLE_TYPES:
        return
    for index, rule in enumerate(args.props.get("rules") or []):
        for field in ("verbs", "resources", "apiGroups"):
            if "*" in list(rule.get(field) or []):
                report_violation(f"rules[{index}].{field} contains '*'", None)


def _no_cluster_admin(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type not in BINDING_TYPES:
        return
    ref = args.props.get("roleRef") or {}
    if ref.get("kind") == "ClusterRole" and ref.get("name") == "cluster-admin":
        report_violation(f"{args.resource_type.split(':')[-1]} binds cluster-admin", None)


def policies() -> list:
    return [
        resource_policy(
            "kubernetes-namespace-psa-labels",
            "Namespaces must carry a Pod Security enforce label with a pinned version.",
            "Add pod-security.kubernetes.io/enforce and enforce-version: v1.xx labels.",
            _namespace_labels,
        ),
        resource_policy(
            "kubernetes-namespace-privileged-acknowledged",
            "PSA level 'privileged' only for a job namespace in the acknowledged unconfined mode.",
            "Use jobSecurityMode 'baseline', or acknowledge 'unconfined' in stack config.",
            _privileged_only_acknowledged,
        ),
        resource_policy(
            "kubernetes-rbac-no-wildcards",
            "Roles and ClusterRoles must not use '*' verbs, resources or API groups.",
            "List the exact verbs and resources (see components/kube_documents.py).",
            _no_wildcards,
        ),
        resource_policy(
            "kubernetes-rbac-no-cluster-admin",
            "Nothing may be bound to cluster-admin.",
            "Bind a least-privilege Role instead.",
            _no_cluster_admin,
        ),
    ]
