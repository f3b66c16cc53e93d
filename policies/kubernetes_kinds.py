"""How the pack reads a Kubernetes resource: group and kind (any version), Patch and List variants, and
every place a pod spec can live.

`<Kind>Patch` resources (pulumi-kubernetes server-side apply patches) carry the same fields as
`<Kind>` and change live objects anywhere the provider may write, so every check applies to them as
to the kind itself. `<Kind>List` resources hold items of that kind. A resource of a kind the pack does
not model that carries a pod spec anywhere (a CRD such as an Argo Rollout, a generic CustomResource)
cannot be judged: the pack reports it instead of letting it pass.

Ref: https://www.pulumi.com/registry/packages/kubernetes/how-to-guides/managing-resources-with-server-side-apply/
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from common import to_plain_data

POD_FIELDS = ("containers", "initContainers", "ephemeralContainers")
CUSTOM_RESOURCE = "apiextensions.k8s.io"
# Where each workload kind keeps its pod (spec, metadata), by (API group, kind), for every version.
# Ref: https://kubernetes.io/docs/concepts/workloads/ (PodTemplateSpec at spec.template; CronJob at
# spec.jobTemplate.spec.template; a PodTemplate's at template)
TEMPLATE_PATHS: dict[tuple[str, str], tuple[str, ...]] = {
    ("core", "Pod"): (),
    ("core", "PodTemplate"): ("template",),
    ("core", "ReplicationController"): ("spec", "template"),
    ("apps", "Deployment"): ("spec", "template"),
    ("apps", "StatefulSet"): ("spec", "template"),
    ("apps", "DaemonSet"): ("spec", "template"),
    ("apps", "ReplicaSet"): ("spec", "template"),
    ("extensions", "Deployment"): ("spec", "template"),
    ("extensions", "DaemonSet"): ("spec", "template"),
    ("extensions", "ReplicaSet"): ("spec", "template"),
    ("batch", "Job"): ("spec", "template"),
    ("batch", "CronJob"): ("spec", "jobTemplate", "spec", "template"),
}


# Kinds whose schema has no pod spec: not walked (their values may be unknown at preview, e.g. a
# Secret's data). Every other kind, CRDs included, is searched for pod specs.
NO_POD_KINDS = frozenset(
    {
        *(
            ("core", k)
            for k in (
                "ConfigMap",
                "Secret",
                "Namespace",
                "ServiceAccount",
                "Service",
                "Endpoints",
                "LimitRange",
                "ResourceQuota",
                "PersistentVolume",
                "PersistentVolumeClaim",
                "Event",
                "Binding",
            )
        ),
        *(("rbac.authorization.k8s.io", k) for k in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")),
        *(("networking.k8s.io", k) for k in ("NetworkPolicy", "Ingress", "IngressClass")),
        ("policy", "PodDisruptionBudget"),
        ("autoscaling", "HorizontalPodAutoscaler"),
        ("scheduling.k8s.io", "PriorityClass"),
        ("storage.k8s.io", "StorageClass"),
        ("coordination.k8s.io", "Lease"),
        ("discovery.k8s.io", "EndpointSlice"),
        ("apiextensions.k8s.io", "CustomResourceDefinition"),
    }
)
NOT_OBJECTS = frozenset({"helm.sh"})  # Helm releases/charts: judged by the chart allow-list, not walked


@dataclass(frozen=True)
class KubeKind:
    group: str  # 'core' for the core group, as in Pulumi type tokens
    kind: str  # without the Patch/List suffix
    patch: bool = False
    list: bool = False


def kube_kind(resource_type: str, props: Mapping[str, Any] | None = None) -> KubeKind | None:
    """The kind of a `kubernetes:<group>/<version>:<Kind>[Patch|List]` token (CustomResource: from its
    own apiVersion/kind); None for anything that is not a Kubernetes object (components, providers)."""
    parts = resource_type.split(":")
    if len(parts) != 3 or parts[0] != "kubernetes":
        return None
    group_version, name = parts[1], parts[2]
    if group_version == CUSTOM_RESOURCE and name in ("CustomResource", "CustomResourcePatch"):
        api_version = str((props or {}).get("apiVersion") or "")
        group = api_version.rsplit("/", 1)[0] if "/" in api_version else "core"
        return KubeKind(group, str((props or {}).get("kind") or ""), patch=name.endswith("Patch"))
    if "/" not in group_version:
        return None  # kubernetes:yaml:ConfigFile, kubernetes:helm.sh/...: handled elsewhere or components
    group = group_version.rsplit("/", 1)[0]
    if name.endswith("Patch"):
        return KubeKind(group, name.removesuffix("Patch"), patch=True)
    if name.endswith("List") and name != "List":
        return KubeKind(group, name.removesuffix("List"), list=True)
    return KubeKind(group, name)


def is_kind(resource_type: str, group: str, kind: str, props: Mapping[str, Any] | None = None) -> bool:
    """True for `<group>/<any version>:<kind>`, its Patch and its List."""
    found = kube_kind(resource_type, props)
    return found is not None and (found.group, found.kind) == (group, kind)


def objects(resource_type: str, props: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(location, object) for the resource itself, or for each item of a List."""
    found = kube_kind(resource_type, props)
    if found is not None and found.list:
        for index, item in enumerate(props.get("items") or []):
            yield f"items[{index}]", item
    else:
        yield "", props


def _at(value: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


def pods(resource_type: str, props: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any], Mapping[str, Any]]]:
    """(location, pod spec, pod metadata) for every pod template of a modelled workload kind."""
    found = kube_kind(resource_type, props)
    if found is None or (found.group, found.kind) not in TEMPLATE_PATHS:
        return
    path = TEMPLATE_PATHS[(found.group, found.kind)]
    for location, obj in objects(resource_type, props):
        template = _at(obj, path)
        if template is None and found.patch:
            continue  # a patch that does not touch the pod template
        template = template if isinstance(template, Mapping) else {}
        spec = template.get("spec") if isinstance(template.get("spec"), Mapping) else {}
        meta = template.get("metadata") if isinstance(template.get("metadata"), Mapping) else {}
        yield ".".join(p for p in (location, *path) if p), spec, meta


def pod_spec_locations(value: Any, path: str = "") -> Iterator[str]:
    """Every place in a document that looks like a pod spec (a mapping with a containers-like list)."""
    if isinstance(value, Mapping):
        if any(isinstance(value.get(field), list) for field in POD_FIELDS):
            yield path or "(root)"
        for key in value:
            yield from pod_spec_locations(value[key], f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from pod_spec_locations(item, f"{path}[{index}]")


def unmodelled_pod_specs(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """Pod specs the pack cannot judge: in a kind it does not model, or outside the modelled path."""
    found = kube_kind(resource_type, props)
    if found is None or found.group in NOT_OBJECTS or (found.group, found.kind) in NO_POD_KINDS:
        return []
    known = {location for location, _, _ in pods(resource_type, props)}
    expected = {f"{location}.spec" if location else "spec" for location in known}
    if (found.group, found.kind) == ("core", "Pod") and not found.list:
        expected.add("spec")
    # The whole document, as plain data: an unknown value anywhere fails the check closed.
    return [where for where in pod_spec_locations(to_plain_data(props)) if where not in expected]
