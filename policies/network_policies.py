"""Stack policy: a runner's job namespace must block the instance metadata service and deny ingress."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from common import stack_policy, to_plain_data
from pulumi_policy import ReportViolation, StackValidationArgs
from runner_release_policies import checked_runner_config, is_runner_release

NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
METADATA_ADDRESSES = (ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254"))


def _job_namespaces(args: StackValidationArgs, report_violation: ReportViolation) -> list[tuple[str, str]]:
    found = []
    for r in args.resources:
        if is_runner_release(r.resource_type, r.props):
            config = checked_runner_config(r.props, report_violation, r.urn)
            for runner in (config.data if config else {}).get("runners") or []:
                found.append((str((runner.get("kubernetes") or {}).get("namespace")), r.urn))
    return found


def _policies_in(args: StackValidationArgs, namespace: str) -> list[dict[str, Any]]:
    return [
        to_plain_data(r.props)
        for r in args.resources
        if r.resource_type == NETWORK_POLICY and (r.props.get("metadata") or {}).get("namespace") == namespace
    ]


def _selects_all_pods(spec: dict[str, Any]) -> bool:
    selector = spec.get("podSelector")
    return selector is not None and not selector.get("matchLabels") and not selector.get("matchExpressions")


def allows_address(peers: Iterable[dict[str, Any]] | None, address: Any) -> bool:
    """Does an egress rule's `to` admit this IP? No `to` means every destination."""
    if peers is None:
        return True
    for peer in peers:
        block = peer.get("ipBlock")
        if not block:
            continue  # pod/namespace selectors only match pods inside the cluster
        cidr = ipaddress.ip_network(block["cidr"])
        if address.version != cidr.version or address not in cidr:
            continue
        if not any(
            address in ipaddress.ip_network(e) for e in block.get("except") or [] if ipaddress.ip_network(e).version == address.version
        ):
            return True
    return False


def metadata_problems(policies: list[dict[str, Any]], namespace: str) -> list[str]:
    egress = [p for p in policies if "Egress" in (p.get("spec") or {}).get("policyTypes", [])]
    if not any(_selects_all_pods(p["spec"]) for p in egress):
        return [f"job namespace {namespace!r} has no egress NetworkPolicy selecting all pods: jobs can reach the instance metadata service"]
    problems = []
    for policy in egress:
        for index, rule in enumerate(policy["spec"].get("egress") or []):
            for address in METADATA_ADDRESSES:
                if allows_address(rule.get("to"), address):
                    problems.append(
                        f"NetworkPolicy {policy['metadata'].get('name')!r} egress[{index}] allows {address} (instance metadata)"
                    )
    return problems


def ingress_problems(policies: list[dict[str, Any]], namespace: str) -> list[str]:
    for policy in policies:
        spec = policy.get("spec") or {}
        if "Ingress" in spec.get("policyTypes", []) and _selects_all_pods(spec) and not spec.get("ingress"):
            return []
    return [f"job namespace {namespace!r} has no default-deny ingress NetworkPolicy"]


def _metadata(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    for namespace, urn in _job_namespaces(args, report_violation):
        for message in metadata_problems(_policies_in(args, namespace), namespace):
            report_violation(message, urn)


def _ingress(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    for namespace, urn in _job_namespaces(args, report_violation):
        for message in ingress_problems(_policies_in(args, namespace), namespace):
            report_violation(message, urn)


def policies() -> list:
    return [
        stack_policy(
            "kubernetes-job-egress-blocks-metadata",
            "A runner's job namespace must have egress NetworkPolicies that never allow the instance metadata addresses.",
            "Enable network isolation (network.enabled) or add an egress policy excluding 169.254.169.254/32 and fd00:ec2::254/128.",
            _metadata,
        ),
        stack_policy(
            "kubernetes-job-deny-ingress",
            "A runner's job namespace must have a default-deny ingress NetworkPolicy.",
            "Enable network isolation (network.enabled).",
            _ingress,
        ),
    ]
