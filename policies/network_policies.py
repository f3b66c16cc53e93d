"""Stack policies: a runner's job namespace must block the metadata services and deny ingress.

Evaluated the way Kubernetes evaluates NetworkPolicies: the *union* of every policy that may select
the job pods (NetworkPolicy and NetworkPolicyPatch, any version), with the API's defaults:
- a missing `policyTypes` means Ingress, plus Egress when the policy has egress rules;
- a rule with no (or an empty) `to`/`from` admits every peer;
- a missing `metadata.namespace` means the provider's namespace (else `default`);
- a pod selector with labels may select job pods (their labels are the runner's), so its rules count.
Only a policy whose pod selector is empty is sure to isolate every job pod.
Ref: https://kubernetes.io/docs/concepts/services-networking/network-policies/
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from common import stack_policy, to_plain_data
from kubernetes_kinds import is_kind, objects
from pulumi_policy import ReportViolation, StackValidationArgs
from runner_release_policies import checked_runner_config, is_runner_release

# Instance metadata (IMDS) and the EKS Pod Identity agent, IPv4 and IPv6.
# Ref: https://docs.aws.amazon.com/eks/latest/userguide/pod-id-how-it-works.html
METADATA_ADDRESSES = (
    ipaddress.ip_address("169.254.169.254"),
    ipaddress.ip_address("fd00:ec2::254"),
    ipaddress.ip_address("169.254.170.23"),
    ipaddress.ip_address("fd00:ec2::23"),
)


def _job_namespaces(args: StackValidationArgs, report_violation: ReportViolation) -> list[tuple[str, str]]:
    found = []
    for r in args.resources:
        if is_runner_release(r.resource_type, r.props):
            config = checked_runner_config(r.props, report_violation, r.urn)
            for runner in (config.data if config else {}).get("runners") or []:
                found.append((str((runner.get("kubernetes") or {}).get("namespace")), r.urn))
    return found


def _namespace_of(resource: Any, meta: Any) -> str:
    namespace = meta.get("namespace")
    if namespace:
        return str(namespace)
    provider = getattr(resource, "provider", None)
    default = (provider.props.get("namespace") if provider is not None and provider.props else None) or "default"
    return str(default)


def policies_in(args: StackValidationArgs, namespace: str) -> list[dict[str, Any]]:
    """Every NetworkPolicy (or patch, or list item) of the stack in `namespace`, as plain data."""
    found = []
    for r in args.resources:
        if not is_kind(r.resource_type, "networking.k8s.io", "NetworkPolicy", r.props):
            continue
        for _, obj in objects(r.resource_type, r.props):
            meta = obj.get("metadata") or {}
            if _namespace_of(r, meta) == namespace:
                found.append(to_plain_data(obj))
    return found


def policy_types(spec: dict[str, Any]) -> set[str]:
    if spec.get("policyTypes") is not None:
        return {str(t) for t in spec["policyTypes"]}
    return {"Ingress", *(["Egress"] if spec.get("egress") else [])}


def selects_all_pods(spec: dict[str, Any]) -> bool:
    selector = spec.get("podSelector") or {}
    return not selector.get("matchLabels") and not selector.get("matchExpressions")


def allows_address(peers: Iterable[dict[str, Any]] | None, address: Any) -> bool:
    """Does an egress rule's `to` admit this IP? No (or an empty) `to` means every destination."""
    peers = list(peers or [])
    if not peers:
        return True
    for peer in peers:
        block = peer.get("ipBlock")
        if not block:
            continue  # pod/namespace selectors only match pods, not the node-local metadata addresses
        cidr = ipaddress.ip_network(block["cidr"], strict=False)
        if address.version != cidr.version or address not in cidr:
            continue
        excepted = [ipaddress.ip_network(e, strict=False) for e in block.get("except") or []]
        if not any(address.version == e.version and address in e for e in excepted):
            return True
    return False


def metadata_problems(policies: list[dict[str, Any]], namespace: str) -> list[str]:
    specs = [(p.get("metadata", {}).get("name"), p.get("spec") or {}) for p in policies]
    if not any(selects_all_pods(spec) and "Egress" in policy_types(spec) for _, spec in specs):
        return [f"job namespace {namespace!r} has no egress NetworkPolicy selecting all pods: jobs can reach the instance metadata service"]
    problems = []
    for name, spec in specs:
        if "Egress" not in policy_types(spec):
            continue
        for index, rule in enumerate(spec.get("egress") or []):
            for address in METADATA_ADDRESSES:
                if allows_address(rule.get("to"), address):
                    problems.append(f"NetworkPolicy {name!r} egress[{index}] allows {address} (instance metadata / Pod Identity agent)")
    return problems


def ingress_problems(policies: list[dict[str, Any]], namespace: str) -> list[str]:
    specs = [(p.get("metadata", {}).get("name"), p.get("spec") or {}) for p in policies]
    if not any(selects_all_pods(spec) and "Ingress" in policy_types(spec) for _, spec in specs):
        return [f"job namespace {namespace!r} has no default-deny ingress NetworkPolicy"]
    return [
        f"NetworkPolicy {name!r} ingress[{index}] admits traffic to job pods (the union of policies allows it)"
        for name, spec in specs
        if "Ingress" in policy_types(spec)
        for index, _ in enumerate(spec.get("ingress") or [])
    ]


def _metadata(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    for namespace, urn in _job_namespaces(args, report_violation):
        for message in metadata_problems(policies_in(args, namespace), namespace):
            report_violation(message, urn)


def _ingress(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    for namespace, urn in _job_namespaces(args, report_violation):
        for message in ingress_problems(policies_in(args, namespace), namespace):
            report_violation(message, urn)


def policies() -> list:
    return [
        stack_policy(
            "kubernetes-job-egress-blocks-metadata",
            "The union of NetworkPolicies selecting a runner's job pods must isolate egress and never allow the instance "
            "metadata or EKS Pod Identity agent addresses.",
            "Enable network isolation (network.enabled), keep metadataCidrs excluded, and add no egress policy that allows them.",
            _metadata,
        ),
        stack_policy(
            "kubernetes-job-deny-ingress",
            "The union of NetworkPolicies selecting a runner's job pods must deny all ingress.",
            "Enable network isolation (network.enabled) and add no ingress rules in the job namespace.",
            _ingress,
        ),
    ]
