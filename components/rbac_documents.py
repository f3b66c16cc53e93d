"""The Kubernetes executor's Role rules, as data."""

from __future__ import annotations

from typing import Any

# Ref: https://docs.gitlab.com/runner/executors/kubernetes/#configure-runner-api-permissions
# (the minimum for the Kubernetes executor; events only let the runner report pod failures).
EXECUTOR_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("pods", ("create", "delete", "get", "list", "watch")),
    ("pods/attach", ("create", "delete", "get", "patch")),
    ("pods/exec", ("create", "delete", "get", "patch")),
    ("pods/log", ("get", "list")),
    ("secrets", ("create", "delete", "get", "update")),
    ("serviceaccounts", ("get",)),
    ("services", ("create", "get")),
    ("events", ("list", "watch")),
)


def executor_role_rules() -> list[dict[str, Any]]:
    return [{"apiGroups": [""], "resources": [resource], "verbs": list(verbs)} for resource, verbs in EXECUTOR_RULES]


# The read-only preview identity: what the Kubernetes provider reads to preview (and refresh) the
# stack's objects, in the two namespaces only; never Secrets (the runner token lives in one).
PREVIEW_NAMESPACED_RULES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("", "serviceaccounts", ("get", "list", "watch")),
    ("", "limitranges", ("get", "list", "watch")),
    ("", "resourcequotas", ("get", "list", "watch")),
    ("", "configmaps", ("get", "list", "watch")),
    ("rbac.authorization.k8s.io", "roles", ("get", "list", "watch")),
    ("rbac.authorization.k8s.io", "rolebindings", ("get", "list", "watch")),
    ("networking.k8s.io", "networkpolicies", ("get", "list", "watch")),
    ("apps", "deployments", ("get", "list", "watch")),
)
PREVIEW_CLUSTER_RULES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("", "namespaces", ("get", "list", "watch")),
    ("scheduling.k8s.io", "priorityclasses", ("get", "list", "watch")),  # the job pods' class
)


def preview_rules(rules: tuple[tuple[str, str, tuple[str, ...]], ...]) -> list[dict[str, Any]]:
    return [{"apiGroups": [group], "resources": [resource], "verbs": list(verbs)} for group, resource, verbs in rules]
