"""The runner's `[[runners.kubernetes.pod_spec]]` patches, applied the way the runner applies them to
the job pod it builds, so that every Pod Security control can judge the result.

The runner builds the job pod, then applies each patch in order with its `patch_type`: "strategic"
(Kubernetes strategic merge: lists of containers, volumes, env... merged by their key), "merge"
(RFC 7386 JSON merge patch) or "json" (RFC 6902 JSON patch). Patches are YAML or JSON. A patch the
pack cannot apply exactly (a directive it does not model, a path that does not exist) is an error, not
a pass.

Ref: https://docs.gitlab.com/runner/executors/kubernetes/#overwrite-generated-pod-specifications
Ref: https://github.com/kubernetes/community/blob/master/contributors/devel/sig-api-machinery/strategic-merge-patch.md
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import yaml

# Strategic merge keys of PodSpec lists (from the API's patchMergeKey tags); other lists are replaced.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "env": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
}


class PatchError(ValueError):
    """A patch the pack cannot apply exactly: it cannot be judged, so it is reported."""


def parse_patch(text: str, name: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PatchError(f"pod_spec patch {name!r} is neither YAML nor JSON ({exc.__class__.__name__})") from None


def _strategic(target: Any, patch: Any, field: str = "") -> Any:
    if isinstance(patch, Mapping):
        for key in patch:
            if str(key).startswith("$"):
                if str(key).startswith("$setElementOrder/"):
                    continue  # ordering only
                raise PatchError(f"strategic merge directive {key!r} is not modelled by the pack")
        result = dict(target) if isinstance(target, Mapping) else {}
        for key, value in patch.items():
            if str(key).startswith("$"):
                continue
            if value is None:
                result.pop(key, None)
            else:
                result[key] = _strategic(result.get(key), value, str(key))
        return result
    if isinstance(patch, list) and field in MERGE_KEYS and isinstance(target, list):
        key = MERGE_KEYS[field]
        result = [copy.deepcopy(item) for item in target]
        for item in patch:
            if not isinstance(item, Mapping) or key not in item:
                raise PatchError(f"a {field} entry without its merge key {key!r}")
            if any(str(k).startswith("$") for k in item):
                raise PatchError(f"strategic merge directive in {field} is not modelled by the pack")
            index = next((i for i, existing in enumerate(result) if isinstance(existing, Mapping) and existing.get(key) == item[key]), None)
            if index is None:
                result.append(_strategic({}, item))
            else:
                result[index] = _strategic(result[index], item)
        return result
    return copy.deepcopy(patch)


def _merge(target: Any, patch: Any) -> Any:
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"JSON pointer {path!r} does not start with '/'")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _parent(document: Any, parts: list[str]) -> tuple[Any, str]:
    node = document
    for part in parts[:-1]:
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise PatchError(f"JSON patch path segment {part!r} is not an index of the list")
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise PatchError(f"JSON patch path segment {part!r} does not exist in the job pod")
    return node, parts[-1]


def _json_patch(document: Any, operations: Any) -> Any:
    if not isinstance(operations, list):
        raise PatchError("a json pod_spec patch must be a list of operations")
    document = copy.deepcopy(document)
    for op in operations:
        if not isinstance(op, Mapping) or op.get("op") not in ("add", "replace", "remove", "copy", "move", "test"):
            raise PatchError(f"JSON patch operation {op!r} is not one of add/replace/remove/copy/move/test")
        kind = op["op"]
        if kind in ("copy", "move"):
            source_parent, source_key = _parent(document, _pointer(str(op.get("from", ""))))
            value = copy.deepcopy(source_parent[int(source_key)] if isinstance(source_parent, list) else source_parent[source_key])
            if kind == "move":
                if isinstance(source_parent, list):
                    source_parent.pop(int(source_key))
                else:
                    del source_parent[source_key]
        elif kind == "test":
            continue
        else:
            value = copy.deepcopy(op.get("value"))
        parts = _pointer(str(op.get("path", "")))
        if not parts:
            if kind == "remove":
                raise PatchError("a JSON patch may not remove the whole pod spec")
            document = value
            continue
        parent, key = _parent(document, parts)
        if isinstance(parent, list):
            index = len(parent) if key == "-" else int(key) if key.isdigit() else -1
            if index < 0 or index > len(parent):
                raise PatchError(f"JSON patch index {key!r} is outside the list")
            if kind == "remove":
                parent.pop(index)
            elif kind == "replace":
                parent[index] = value
            else:
                parent.insert(index, value)
        elif isinstance(parent, dict):
            if kind == "remove":
                parent.pop(key, None)
            else:
                parent[key] = value
        else:
            raise PatchError(f"JSON patch path {op.get('path')!r} does not lead into an object or list")
    return document


def apply_patch(spec: Mapping[str, Any], patch_type: str, text: str, name: str) -> dict[str, Any]:
    """The pod spec after one runner pod_spec patch; raises PatchError when it cannot be applied exactly."""
    document = parse_patch(text, name)
    if patch_type == "strategic":
        result = _strategic(spec, document)
    elif patch_type == "merge":
        result = _merge(spec, document)
    elif patch_type == "json":
        result = _json_patch(spec, document)
    else:
        raise PatchError(f"pod_spec patch {name!r} has patch_type {patch_type!r} (strategic, merge or json)")
    if not isinstance(result, dict):
        raise PatchError(f"pod_spec patch {name!r} does not leave a pod spec object")
    return result


# config.toml container security context keys -> Kubernetes SecurityContext fields.
CONTEXT_FIELDS = {
    "privileged": "privileged",
    "allow_privilege_escalation": "allowPrivilegeEscalation",
    "run_as_non_root": "runAsNonRoot",
    "run_as_user": "runAsUser",
    "run_as_group": "runAsGroup",
    "read_only_root_filesystem": "readOnlyRootFilesystem",
    "proc_mount": "procMount",
}


def _context(settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """A config.toml container security context as the runner turns it into a Kubernetes one."""
    settings = settings or {}
    context: dict[str, Any] = {CONTEXT_FIELDS[k]: v for k, v in settings.items() if k in CONTEXT_FIELDS}
    capabilities = settings.get("capabilities") or {}
    if capabilities:
        context["capabilities"] = {k: list(v) for k, v in capabilities.items() if k in ("add", "drop")}
    return context


def job_pod(kube: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(spec, metadata) of the pod the runner builds from a `[runners.kubernetes]` section, before patches:
    build and helper containers, the init-permissions container, the configured volumes and contexts."""
    pod_context = kube.get("pod_security_context") or {}
    spec: dict[str, Any] = {
        "securityContext": {
            key: pod_context[name]
            for key, name in (
                ("fsGroup", "fs_group"),
                ("runAsUser", "run_as_user"),
                ("runAsGroup", "run_as_group"),
                ("runAsNonRoot", "run_as_non_root"),
            )
            if name in pod_context
        },
        "containers": [
            {"name": "build", "image": kube.get("image"), "securityContext": _context(kube.get("build_container_security_context"))},
            {"name": "helper", "securityContext": _context(kube.get("helper_container_security_context"))},
        ],
        "initContainers": [
            {"name": "init-permissions", "securityContext": _context(kube.get("init_permissions_container_security_context"))}
        ],
        "volumes": [{"name": volume.get("name"), "emptyDir": {}} for volume in (kube.get("volumes") or {}).get("empty_dir") or []]
        + [
            {"name": volume.get("name"), "hostPath": {"path": volume.get("host_path") or volume.get("mount_path")}}
            for volume in (kube.get("volumes") or {}).get("host_path") or []
        ],
    }
    if kube.get("privileged") is True:
        for container in spec["containers"]:
            container["securityContext"]["privileged"] = True
    meta = {"annotations": dict(kube.get("pod_annotations") or {})}
    return spec, meta


def patched_job_pod(kube: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    spec, meta = job_pod(kube)
    for patch in kube.get("pod_spec") or []:
        name = str(patch.get("name", "?"))
        spec = apply_patch(spec, str(patch.get("patch_type", "strategic")), str(patch.get("patch", "")), name)
    return spec, meta
