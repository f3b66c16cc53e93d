"""Pure builders for the Kubernetes documents the stack creates (labels, RBAC rules, quotas, NetworkPolicies).

They return plain camelCase dicts, exactly as they appear in the manifest, so the same data feeds the
Pulumi resources, the offline schema validation and the tests.
"""

from __future__ import annotations

import ipaddress
import re
from decimal import Decimal
from typing import Any

from .config import ConfigError, StackConfig

PSA = "pod-security.kubernetes.io"
MANAGED_BY = {"app.kubernetes.io/managed-by": "pulumi", "app.kubernetes.io/part-of": "gitlab-buildkit-runner"}
METRICS_PORT = 9252
# Read by the policy pack (policies/runner_checks.py) to tell an acknowledged 'unconfined' job namespace.
JOB_SECURITY_MODE_ANNOTATION = "gitlab-buildkit-runner/job-security-mode"

# Ref: ../shared/design/platform-facts.md §2. The job level follows the job security mode: rootless
# BuildKit can never run under 'restricted'; explicit Unconfined profiles need 'privileged'.
JOB_PSA_LEVELS = {
    "baseline": {"enforce": "baseline", "warn": "restricted", "audit": "restricted"},
    "unconfined": {"enforce": "privileged", "warn": "baseline", "audit": "baseline"},
}
MANAGER_PSA_LEVELS = {"enforce": "restricted", "warn": "restricted", "audit": "restricted"}


def psa_labels(levels: dict[str, str], version: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    for mode, level in levels.items():
        labels[f"{PSA}/{mode}"] = level
        labels[f"{PSA}/{mode}-version"] = version
    return labels


def manager_namespace_labels(cfg: StackConfig) -> dict[str, str]:
    return {**MANAGED_BY, **psa_labels(MANAGER_PSA_LEVELS, cfg.kubernetes.pod_security_version)}


def job_namespace_annotations(cfg: StackConfig) -> dict[str, str]:
    return {JOB_SECURITY_MODE_ANNOTATION: cfg.runner.job_security_mode}


def job_namespace_labels(cfg: StackConfig) -> dict[str, str]:
    levels = JOB_PSA_LEVELS[cfg.runner.job_security_mode]
    return {**MANAGED_BY, **psa_labels(levels, cfg.kubernetes.pod_security_version)}


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


_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m|Ki|Mi|Gi|Ti|k|M|G|T)?$")
_FACTORS = {
    None: Decimal(1),
    "m": Decimal("0.001"),
    "k": Decimal(10**3),
    "M": Decimal(10**6),
    "G": Decimal(10**9),
    "T": Decimal(10**12),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
}


def parse_quantity(quantity: str) -> Decimal:
    match = _QUANTITY.match(quantity)
    if not match:
        raise ValueError(f"not a Kubernetes quantity: {quantity!r}")
    return Decimal(match[1]) * _FACTORS[match[2]]


def _largest(*quantities: str | None) -> str:
    present = [q for q in quantities if q is not None]
    return max(present, key=parse_quantity)


def job_limit_range_spec(cfg: StackConfig) -> dict[str, Any]:
    """Defaults for containers that set nothing, and maxima so one build cannot starve the node."""
    build = cfg.runner.build_resources
    runner = cfg.runner
    maximum = {
        "cpu": _largest(build.cpu_limit, runner.cpu_limit_overwrite_max),
        "memory": _largest(build.memory_limit, runner.memory_limit_overwrite_max),
    }
    default = {"cpu": build.cpu_limit, "memory": build.memory_limit}
    default_request = {"cpu": build.cpu_request, "memory": build.memory_request}
    if build.ephemeral_storage_limit:
        maximum["ephemeral-storage"] = build.ephemeral_storage_limit
        default["ephemeral-storage"] = build.ephemeral_storage_limit
    if build.ephemeral_storage_request:
        default_request["ephemeral-storage"] = build.ephemeral_storage_request
    return {"limits": [{"type": "Container", "max": maximum, "default": default, "defaultRequest": default_request}]}


def job_quota_spec(cfg: StackConfig) -> dict[str, Any] | None:
    quota = cfg.kubernetes.job_quota
    if quota is None:
        return None
    return {
        "hard": {
            "limits.cpu": quota.cpu,
            "limits.memory": quota.memory,
            "limits.ephemeral-storage": quota.ephemeral_storage,
            "pods": str(quota.pods),
        }
    }


# --- NetworkPolicies ---------------------------------------------------------------------------


def _dns_peer(cfg: StackConfig) -> dict[str, Any]:
    return {
        "to": [
            {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": cfg.network.dns_namespace}},
                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
            }
        ],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
    }


def job_egress_blocks(cfg: StackConfig) -> list[dict[str, Any]]:
    """ipBlocks for the job allow-list, each with every always-excluded range inside it as `except`.

    Kubernetes rejects an `except` outside its `cidr`, so exclusions are placed per block. An allowed
    range that lies inside an excluded one would be empty after exclusion: that is a config error.
    """
    net = cfg.network
    excluded = [ipaddress.ip_network(c) for c in [*net.metadata_cidrs, *net.api_server_cidrs, *net.private_cidrs]]
    blocks = []
    for cidr in net.job_egress_cidrs:
        allowed = ipaddress.ip_network(cidr)
        excepts: list[str] = []
        for ex in excluded:
            if ex.version != allowed.version:
                continue
            if ex.subnet_of(allowed) and ex != allowed:  # type: ignore[arg-type]
                if str(ex) not in excepts:
                    excepts.append(str(ex))
            elif allowed.subnet_of(ex):  # type: ignore[arg-type]
                raise ConfigError(
                    f"invalid stack configuration:\n  gitlab-buildkit-runner:network.jobEgressCidrs = {cidr!r}: "
                    f"lies inside the always-excluded range {ex} (metadata, API server or private ranges)"
                )
        block: dict[str, Any] = {"cidr": str(allowed)}
        if excepts:
            block["except"] = excepts
        blocks.append({"ipBlock": block})
    return blocks


def job_network_policies(cfg: StackConfig) -> dict[str, dict[str, Any]]:
    """Job namespace: no ingress at all; egress to cluster DNS and the allow-list minus excluded ranges."""
    return {
        "deny-ingress": {"podSelector": {}, "policyTypes": ["Ingress"]},
        "restrict-egress": {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [_dns_peer(cfg), {"to": job_egress_blocks(cfg)}],
        },
    }


def manager_network_policies(cfg: StackConfig) -> dict[str, dict[str, Any]]:
    """Manager namespace: egress to DNS, GitLab (443) and the API server; ingress only for metrics."""
    net = cfg.network
    api_rule: dict[str, Any] = {"ports": [{"protocol": "TCP", "port": net.api_server_port}]}
    if net.api_server_cidrs:
        api_rule["to"] = [{"ipBlock": {"cidr": c}} for c in net.api_server_cidrs]
    egress = [
        _dns_peer(cfg),
        {"to": [{"ipBlock": {"cidr": c}} for c in net.gitlab_cidrs], "ports": [{"protocol": "TCP", "port": 443}]},
        api_rule,
    ]
    ingress: list[dict[str, Any]] = []
    if net.metrics_namespace and cfg.runner.metrics_enabled:
        ingress.append(
            {
                "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": net.metrics_namespace}}}],
                "ports": [{"protocol": "TCP", "port": METRICS_PORT}],
            }
        )
    return {
        "manager-ingress": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": ingress},
        "manager-egress": {"podSelector": {}, "policyTypes": ["Egress"], "egress": egress},
    }
