"""The job pod the gitlab-runner Kubernetes executor creates, built from a `[runners.kubernetes]` section.

Stand-in, named as such: the real runner (gitlab.com/gitlab-org/gitlab-runner, not on the Go module
proxy at the chart's appVersion) would build this pod itself. This mirrors what its executor source
does for a plain job without services: the build and helper containers, the init-permissions
container (helper image, helper resources), the configured and the executor's own emptyDir volumes,
the security contexts and resources from config.toml, then the pod_spec patches.
Ref: https://gitlab.com/gitlab-org/gitlab-runner/-/blob/v18.9.0/executors/kubernetes/kubernetes.go
"""

from __future__ import annotations

import sys
from typing import Any

from verify.harness import ROOT

sys.path.insert(0, str(ROOT / "policies"))
# The pack's patch code and context field names, used as a library.
from pod_spec_patches import CONTEXT_FIELDS, apply_patch

HELPER_IMAGE = "registry.gitlab.com/gitlab-org/gitlab-runner/gitlab-runner-helper:x86_64-v18.9.0"


def _resources(kube: dict[str, Any], prefix: str) -> dict[str, Any]:
    result: dict[str, dict[str, str]] = {}
    for kind, name in (("cpu", "cpu"), ("memory", "memory"), ("ephemeral_storage", "ephemeral-storage")):
        for what, key in (("request", "requests"), ("limit", "limits")):
            value = kube.get(f"{prefix}{kind}_{what}")
            if value:
                result.setdefault(key, {})[name] = str(value)
    return result


def _context(settings: dict[str, Any] | None) -> dict[str, Any]:
    settings = settings or {}
    context = {CONTEXT_FIELDS[k]: v for k, v in settings.items() if k in CONTEXT_FIELDS}
    caps = settings.get("capabilities") or {}
    # The executor drops NET_RAW when the config names no drop list (defaultCapDrop).
    context["capabilities"] = {"drop": list(caps.get("drop") or ["NET_RAW"]), **({"add": list(caps["add"])} if caps.get("add") else {})}
    return context


def job_pod(kube: dict[str, Any], name: str, *, services: int = 0) -> dict[str, Any]:
    helper_image = kube.get("helper_image") or HELPER_IMAGE
    volumes = [
        {
            "name": v["name"],
            "emptyDir": {k: v[k] for k in ("medium",) if v.get(k)} | ({"sizeLimit": v["size_limit"]} if v.get("size_limit") else {}),
        }
        for v in (kube.get("volumes") or {}).get("empty_dir") or []
    ]
    volumes += [{"name": n, "emptyDir": {}} for n in ("repo", "scripts-0-1", "logs-0-1")]
    mounts = [
        {"name": v["name"], "mountPath": m}
        for v, m in zip(
            volumes,
            [*(e["mount_path"] for e in (kube.get("volumes") or {}).get("empty_dir") or []), "/builds", "/scripts-0-1", "/logs-0-1"],
            strict=True,
        )
    ]
    containers = [
        {
            "name": "build",
            "image": kube["image"],
            "resources": _resources(kube, ""),
            "securityContext": _context(kube.get("build_container_security_context")),
            "volumeMounts": mounts,
        },
        {
            "name": "helper",
            "image": helper_image,
            "resources": _resources(kube, "helper_"),
            "securityContext": _context(kube.get("helper_container_security_context")),
            "volumeMounts": mounts,
        },
    ]
    containers += [
        {
            "name": f"svc-{i}",
            "image": "postgres:16",
            "resources": _resources(kube, "service_"),
            "securityContext": _context(kube.get("service_container_security_context")),
        }
        for i in range(services)
    ]
    pod_context = kube.get("pod_security_context") or {}
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "serviceAccountName": kube.get("service_account", "default"),
        "automountServiceAccountToken": bool(kube.get("automount_service_account_token", False)),
        "securityContext": {
            camel: pod_context[key]
            for key, camel in (("fs_group", "fsGroup"), ("run_as_user", "runAsUser"), ("run_as_non_root", "runAsNonRoot"))
            if key in pod_context
        },
        "initContainers": [
            {
                "name": "init-permissions",
                "image": helper_image,
                "command": ["sh", "-c", "touch /logs-0-1/output.log"],
                "resources": _resources(kube, "helper_"),
                "securityContext": _context(kube.get("init_permissions_container_security_context")),
                "volumeMounts": mounts,
            }
        ],
        "containers": containers,
        "volumes": volumes,
    }
    if kube.get("node_selector"):
        spec["nodeSelector"] = dict(kube["node_selector"])
    if kube.get("priority_class_name"):  # the executor's PriorityClassName (executors/kubernetes)
        spec["priorityClassName"] = kube["priority_class_name"]
    for patch in kube.get("pod_spec") or []:
        spec = apply_patch(spec, patch.get("patch_type", "strategic"), patch["patch"], patch["name"])
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": kube["namespace"], "annotations": dict(kube.get("pod_annotations") or {})},
        "spec": spec,
    }
