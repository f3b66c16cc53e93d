"""Pure builders for the NetworkPolicies of the two namespaces."""

from __future__ import annotations

import ipaddress
from typing import Any

from .config import NetworkConfig
from .helm_values import METRICS_PORT


def _dns_peer(network: NetworkConfig) -> dict[str, Any]:
    return {
        "to": [
            {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": network.dns_namespace}},
                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
            }
        ],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
    }


def job_egress_blocks(network: NetworkConfig) -> list[dict[str, Any]]:
    """ipBlocks for the job allow-list, each with every always-excluded range inside it as `except`.

    Kubernetes rejects an `except` outside its `cidr`, so exclusions are placed per block. An allowed
    range inside an excluded one is refused by the config model (NetworkConfig), before any resource.
    """
    blocks = []
    for cidr in network.job_egress_cidrs:
        allowed = ipaddress.ip_network(cidr)
        excepts: list[str] = []
        for ex in network.excluded_networks():
            if ex.version != allowed.version:
                continue
            assert not allowed.subnet_of(ex), f"{allowed} inside excluded {ex}: NetworkConfig must refuse it"  # type: ignore[arg-type]
            if ex.subnet_of(allowed) and ex != allowed and str(ex) not in excepts:  # type: ignore[arg-type]
                excepts.append(str(ex))
        block: dict[str, Any] = {"cidr": str(allowed)}
        if excepts:
            block["except"] = excepts
        blocks.append({"ipBlock": block})
    return blocks


def job_network_policies(network: NetworkConfig) -> dict[str, dict[str, Any]]:
    """Job namespace: no ingress at all; egress to cluster DNS and the allow-list minus excluded ranges."""
    return {
        "deny-ingress": {"podSelector": {}, "policyTypes": ["Ingress"]},
        "restrict-egress": {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [_dns_peer(network), {"to": job_egress_blocks(network)}],
        },
    }


def manager_network_policies(network: NetworkConfig, *, metrics_enabled: bool) -> dict[str, dict[str, Any]]:
    """Manager namespace: egress to DNS, GitLab (443) and the API server; ingress only for metrics."""
    api_rule: dict[str, Any] = {"ports": [{"protocol": "TCP", "port": network.api_server_port}]}
    if network.api_server_cidrs:
        api_rule["to"] = [{"ipBlock": {"cidr": c}} for c in network.api_server_cidrs]
    egress = [
        _dns_peer(network),
        {"to": [{"ipBlock": {"cidr": c}} for c in network.gitlab_cidrs], "ports": [{"protocol": "TCP", "port": 443}]},
        api_rule,
    ]
    ingress: list[dict[str, Any]] = []
    if network.metrics_namespace and metrics_enabled:
        ingress.append(
            {
                "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": network.metrics_namespace}}}],
                "ports": [{"protocol": "TCP", "port": METRICS_PORT}],
            }
        )
    return {
        "manager-ingress": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": ingress},
        "manager-egress": {"podSelector": {}, "policyTypes": ["Egress"], "egress": egress},
    }


def builder_network_policies(
    network: NetworkConfig, *, builders_namespace: str, job_namespace: str, port: int, daemon_labels: dict[str, str]
) -> dict[str, tuple[str, dict[str, Any]]]:
    """builders.mode 'warm': name -> (namespace, spec). In the builders namespace, the daemons take
    connections only from pods of the job namespace, on their port, and reach what jobs reach (a daemon
    pulls base images and pushes with the job's registry token). In the job namespace, one egress rule
    more: to those daemons, on that port (the jobs' allow-list excludes private addresses)."""

    def namespace(name: str) -> dict[str, Any]:
        return {"matchLabels": {"kubernetes.io/metadata.name": name}}

    return {
        "buildkitd-ingress": (
            builders_namespace,
            {
                "podSelector": {},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        "from": [{"namespaceSelector": namespace(job_namespace), "podSelector": {}}],
                        "ports": [{"protocol": "TCP", "port": port}],
                    }
                ],
            },
        ),
        "buildkitd-egress": (builders_namespace, job_network_policies(network)["restrict-egress"]),
        "jobs-to-buildkitd": (
            job_namespace,
            {
                "podSelector": {},
                "policyTypes": ["Egress"],
                "egress": [
                    {
                        "to": [{"namespaceSelector": namespace(builders_namespace), "podSelector": {"matchLabels": dict(daemon_labels)}}],
                        "ports": [{"protocol": "TCP", "port": port}],
                    }
                ],
            },
        ),
    }
