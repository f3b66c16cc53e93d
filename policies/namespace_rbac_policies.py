"""Namespaces carry pinned PSA labels; RBAC created by the stack has no wildcards, no privilege-granting
verbs, no aggregation and no bindings to cluster-admin or to everyone. `<Kind>Patch` resources are judged
as their kind, since a server-side-apply patch edits live objects (kube-system included)."""

from __future__ import annotations

import re
from typing import Any

from common import resource_policy, to_plain_data
from kubernetes_kinds import is_kind, kube_kind, objects
from marks import (
    APPARMOR_PROFILE_ANNOTATION,
    APPARMOR_PROFILE_PATTERN,
    JOB_SECURITY_MODE_ANNOTATION,
    JOB_SECURITY_MODES,
    MIN_POD_SECURITY_VERSION,
    PSA_LABEL_PREFIX,
    PSA_VERSION_PATTERN,
    SECCOMP_PROFILE_ANNOTATION,
    SECCOMP_PROFILE_PATTERN,
    is_profile_name,
)
from pulumi_policy import ReportViolation, ResourceValidationArgs

LEVELS = ("privileged", "baseline", "restricted")
PINNED_VERSION = re.compile(PSA_VERSION_PATTERN)
MIN_MINOR = int(MIN_POD_SECURITY_VERSION.split(".")[1])


def _version_problem(key: str, value: object, pinned: bool) -> str | None:
    """Why a -version label is refused, or None. PSA reads 'latest' or v1.<minor>; anything else it
    treats as an error (and evaluates as latest), and a minor below the floor skips checks."""
    text = str(value)
    if text == "latest" and not pinned:
        return None
    if PINNED_VERSION.fullmatch(text) and int(text.split(".")[1]) >= MIN_MINOR:
        return None
    allowed = f"a pinned version v1.{MIN_MINOR} or newer" + ("" if pinned else " or 'latest'")
    return f"label {key}={value!r} must be {allowed}: older Pod Security Standards skip checks the stack relies on"


RBAC = "rbac.authorization.k8s.io"
# Verbs that let a subject grant itself more than its role: escalate (edit roles beyond its own
# rights), bind (bind any role), impersonate (act as any user, group or service account).
# Ref: https://kubernetes.io/docs/concepts/security/rbac-good-practices/#privilege-escalation-risks
ESCALATING_VERBS = frozenset({"escalate", "bind", "impersonate"})
# Roles that grant (nearly) everything in their scope.
SUPERUSER_ROLES = frozenset({"cluster-admin", "admin", "edit"})
# Subjects that mean "everyone" (or the cluster's own superusers).
# Ref: https://kubernetes.io/docs/reference/access-authn-authz/rbac/#default-roles-and-role-bindings
EVERYONE = frozenset({"system:unauthenticated", "system:anonymous", "system:authenticated", "system:masters"})


def _namespaces(args: ResourceValidationArgs) -> list[tuple[str, dict[str, Any], bool]]:
    found = kube_kind(args.resource_type, args.props)
    if not is_kind(args.resource_type, "core", "Namespace", args.props) or found is None:
        return []
    return [(where, dict(obj.get("metadata") or {}), found.patch) for where, obj in objects(args.resource_type, args.props)]


def _namespace_labels(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    for _, meta, patch in _namespaces(args):
        labels = meta.get("labels") or {}
        name = meta.get("name")
        # Every -version label (enforce, audit, warn): an old version lowers what PSA checks, on the
        # stack's namespaces and through a patch on any live one alike.
        for key, value in labels.items():
            if key.startswith(f"{PSA_LABEL_PREFIX}/") and key.endswith("-version"):
                problem = _version_problem(key, value, pinned=key == f"{PSA_LABEL_PREFIX}/enforce-version" and not patch)
                if problem:
                    report_violation(f"{'NamespacePatch' if patch else 'namespace'} {name!r}: {problem}", None)
        if patch:
            # A patch changes a live namespace whose other labels the pack cannot see: it may only pin
            # PSA labels to 'restricted', never set a weaker level (that would relax kube-system, say).
            for key, value in labels.items():
                if key.startswith(f"{PSA_LABEL_PREFIX}/") and not key.endswith("-version") and value != "restricted":
                    report_violation(
                        f"NamespacePatch {name!r} sets {key}={value!r}: a patch may only tighten Pod Security to 'restricted'; "
                        "PSA levels of the stack's namespaces come from Namespace resources",
                        None,
                    )
            continue
        enforce = labels.get(f"{PSA_LABEL_PREFIX}/enforce")
        if enforce not in LEVELS:
            report_violation(f"namespace {name!r}: label {PSA_LABEL_PREFIX}/enforce must be one of {list(LEVELS)} (is {enforce!r})", None)
        version = labels.get(f"{PSA_LABEL_PREFIX}/enforce-version")
        if version is None:
            report_violation(
                f"namespace {name!r}: label {PSA_LABEL_PREFIX}/enforce-version must pin a version v1.{MIN_MINOR} or newer (is None)", None
            )


def _privileged_only_acknowledged(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    for _, meta, patch in _namespaces(args):
        if (meta.get("labels") or {}).get(f"{PSA_LABEL_PREFIX}/enforce") != "privileged":
            continue
        if patch or (meta.get("annotations") or {}).get(JOB_SECURITY_MODE_ANNOTATION) != "unconfined":
            report_violation(
                f"namespace {meta.get('name')!r} enforces PSA 'privileged' without the acknowledged "
                f"unconfined job security mode (annotation {JOB_SECURITY_MODE_ANNOTATION}=unconfined on a Namespace resource)",
                None,
            )


def _job_security_marks(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """The marks the runner policies read: a known mode, and in 'confined' well-formed profile names (and
    only there), on Namespace resources (a patch could mark a namespace the pack cannot see)."""
    for _, meta, patch in _namespaces(args):
        annotations = meta.get("annotations") or {}
        name = meta.get("name")
        marks = [
            key for key in (JOB_SECURITY_MODE_ANNOTATION, SECCOMP_PROFILE_ANNOTATION, APPARMOR_PROFILE_ANNOTATION) if key in annotations
        ]
        if patch and marks:
            report_violation(f"NamespacePatch {name!r} sets {marks}: job security marks belong on the stack's Namespace resources", None)
            continue
        mode = annotations.get(JOB_SECURITY_MODE_ANNOTATION)
        if mode is not None and mode not in JOB_SECURITY_MODES:
            report_violation(f"namespace {name!r}: {JOB_SECURITY_MODE_ANNOTATION}={mode!r} is not one of {list(JOB_SECURITY_MODES)}", None)
        seccomp = annotations.get(SECCOMP_PROFILE_ANNOTATION)
        apparmor = annotations.get(APPARMOR_PROFILE_ANNOTATION)
        if mode != "confined":
            for key in (SECCOMP_PROFILE_ANNOTATION, APPARMOR_PROFILE_ANNOTATION):
                if key in annotations:
                    report_violation(f"namespace {name!r}: {key} is only meaningful with {JOB_SECURITY_MODE_ANNOTATION}=confined", None)
            continue
        if not is_profile_name(seccomp, SECCOMP_PROFILE_PATTERN):
            report_violation(
                f"namespace {name!r}: {SECCOMP_PROFILE_ANNOTATION}={seccomp!r} must name the confined mode's seccomp profile as a "
                "relative path of letters, digits, '.', '_', '-' ending in .json, without '..'",
                None,
            )
        if apparmor is not None and not is_profile_name(apparmor, APPARMOR_PROFILE_PATTERN):
            report_violation(f"namespace {name!r}: {APPARMOR_PROFILE_ANNOTATION}={apparmor!r} is not an AppArmor profile name", None)


def _rules(args: ResourceValidationArgs) -> list[tuple[str, Any]]:
    if not (is_kind(args.resource_type, RBAC, "Role", args.props) or is_kind(args.resource_type, RBAC, "ClusterRole", args.props)):
        return []
    return [(where, obj) for where, obj in objects(args.resource_type, args.props)]


def _no_wildcards(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    for where, role in _rules(args):
        prefix = f"{where}." if where else ""
        if role.get("aggregationRule") is not None:
            report_violation(
                f"{prefix}aggregationRule pulls in the rules of every ClusterRole its selectors match (cluster-admin's too)", None
            )
        for index, rule in enumerate(role.get("rules") or []):
            for field in ("verbs", "resources", "apiGroups", "resourceNames", "nonResourceURLs"):
                for value in to_plain_data(rule.get(field) or []):
                    if "*" in str(value):
                        report_violation(f"{prefix}rules[{index}].{field} contains a wildcard ({value!r})", None)
            for verb in to_plain_data(rule.get("verbs") or []):
                if str(verb).lower() in ESCALATING_VERBS:
                    report_violation(f"{prefix}rules[{index}].verbs grants {verb!r}, which escalates beyond the role", None)


def _no_superuser_bindings(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    binding = is_kind(args.resource_type, RBAC, "ClusterRoleBinding", args.props) or is_kind(
        args.resource_type, RBAC, "RoleBinding", args.props
    )
    if not binding:
        return
    for where, obj in objects(args.resource_type, args.props):
        prefix = f"{where}: " if where else ""
        ref = obj.get("roleRef") or {}
        if ref.get("kind") == "ClusterRole" and ref.get("name") in SUPERUSER_ROLES:
            report_violation(f"{prefix}{args.resource_type.split(':')[-1]} binds the ClusterRole {ref.get('name')!r}", None)
        for subject in obj.get("subjects") or []:
            name = str(subject.get("name"))
            if name in EVERYONE or (name.startswith("system:serviceaccounts") and subject.get("kind") == "Group"):
                report_violation(
                    f"{prefix}binds {subject.get('kind')} {name!r}, which stands for everyone (or every service account)", None
                )


def policies() -> list:
    return [
        resource_policy(
            "kubernetes-namespace-psa-labels",
            "Namespaces must carry a Pod Security enforce label with a pinned version; no -version label older than the floor; "
            "a NamespacePatch may only tighten to restricted.",
            f"Add pod-security.kubernetes.io/enforce and enforce-version: v1.{MIN_MINOR}+ labels; do not relax namespaces with patches.",
            _namespace_labels,
        ),
        resource_policy(
            "kubernetes-namespace-privileged-acknowledged",
            "PSA level 'privileged' only for a job namespace in the acknowledged unconfined mode (never through a patch).",
            "Use jobSecurityMode 'baseline', or acknowledge 'unconfined' in stack config.",
            _privileged_only_acknowledged,
        ),
        resource_policy(
            "kubernetes-namespace-job-security-marks",
            "A namespace's job security mode mark must be a known mode; Localhost profile marks only in 'confined', as "
            "well-formed names, never through a patch.",
            "Let the stack set the marks from runner.jobSecurityMode and runner.confinedProfiles.",
            _job_security_marks,
        ),
        resource_policy(
            "kubernetes-rbac-no-wildcards",
            "Roles and ClusterRoles (and their patches) must not use wildcards, aggregation, or the escalate/bind/impersonate verbs.",
            "List the exact verbs and resources (see components/rbac_documents.py).",
            _no_wildcards,
        ),
        resource_policy(
            "kubernetes-rbac-no-cluster-admin",
            "Nothing may be bound to cluster-admin, admin or edit, and no binding may name everyone (system:unauthenticated, ...).",
            "Bind a least-privilege Role to named service accounts instead.",
            _no_superuser_bindings,
        ),
    ]
