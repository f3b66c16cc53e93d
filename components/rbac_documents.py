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
