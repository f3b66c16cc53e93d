"""NetworkPolicies of the runner namespaces: what job pods and the manager may reach."""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import Field, model_validator

from .base import ConfigModel, RuleViolation
from .fields import Cidr, DnsLabel

# IMDS and the EKS Pod Identity agent, IPv4 and IPv6 (the pack restates them: tests/test_contracts.py).
# Ref: https://docs.aws.amazon.com/eks/latest/userguide/pod-id-how-it-works.html
METADATA_ADDRESSES = ("169.254.169.254", "fd00:ec2::254", "169.254.170.23", "fd00:ec2::23")

PolicyEngine = Literal["calico", "cilium", "vpc-cni", "none"]
# Engines that enforce NetworkPolicies on the runner's job pods: the Kubernetes executor creates bare
# pods (no ownerReferences), which the Amazon VPC CNI's network policy agent does not enforce on.
# Ref: https://docs.aws.amazon.com/eks/latest/userguide/cni-network-policy.html ("You can't apply network
# policies to standalone Pods that don't have the metadata.ownerReferences set")
ENFORCING_ENGINES = ("calico", "cilium")


class NetworkConfig(ConfigModel):
    enabled: bool = True
    """Create the NetworkPolicies (needs a CNI that enforces them)."""
    policy_engine: PolicyEngine | None = None
    """The cluster's NetworkPolicy engine: 'calico' or 'cilium' (enforce on job pods), 'vpc-cni' (does not
    enforce on the runner's bare job pods) or 'none'; required while enabled (README 'Network isolation
    per engine')."""
    acknowledge_unenforced_job_isolation: bool = False
    """Must be true with policyEngine 'vpc-cni' or 'none': job pods are then not isolated by the
    NetworkPolicies, only by node-level defences (IMDSv2 hop limit 1, no Pod Identity for jobs)."""
    job_egress_cidrs: list[Cidr] = ["0.0.0.0/0", "::/0"]
    """Where job pods may connect (besides DNS)."""
    # Always excluded from job egress, whatever the allow-list says.
    metadata_cidrs: list[Cidr] = ["169.254.169.254/32", "fd00:ec2::254/128", "169.254.170.23/32", "fd00:ec2::23/128"]
    """Instance metadata (IMDS) and EKS Pod Identity agent addresses, always excluded from job egress."""
    private_cidrs: list[Cidr] = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7"]
    """Cluster/VPC ranges, always excluded from job egress."""
    api_server_cidrs: list[Cidr] = []
    """Kubernetes API server addresses: excluded for jobs, allowed for the manager."""
    api_server_port: int = Field(443, ge=1, le=65535)
    """API server port the manager may reach."""
    gitlab_cidrs: list[Cidr] = ["0.0.0.0/0", "::/0"]
    """Where the manager may reach GitLab on 443."""
    dns_namespace: DnsLabel = "kube-system"
    """Namespace of cluster DNS (pods labelled k8s-app=kube-dns)."""
    metrics_namespace: DnsLabel | None = None
    """Namespace allowed to scrape the manager's metrics; unset denies all ingress."""

    @model_validator(mode="after")
    def _engine_enforces_or_is_acknowledged(self) -> NetworkConfig:
        engine = self.policy_engine
        if self.acknowledge_unenforced_job_isolation and engine in ENFORCING_ENGINES:
            raise RuleViolation(
                "acknowledgeUnenforcedJobIsolation", True, f"is only meaningful with policyEngine 'vpc-cni' or 'none' ({engine!r} enforces)"
            )
        if self.enabled and engine is not None and engine not in ENFORCING_ENGINES and not self.acknowledge_unenforced_job_isolation:
            raise RuleViolation(
                "policyEngine",
                engine,
                "does not enforce NetworkPolicies on the runner's job pods (bare pods, no ownerReferences): build steps could "
                "reach instance metadata, the VPC and the API server whatever the policies say. Use 'calico' or 'cilium' "
                "(policy enforcement beside the VPC CNI works), or set acknowledgeUnenforcedJobIsolation: true after the "
                "node-level defences in README 'Network isolation per engine'",
            )
        return self

    @model_validator(mode="after")
    def _lists_are_not_empty(self) -> NetworkConfig:
        if not self.enabled:
            return self
        if not self.job_egress_cidrs:
            raise RuleViolation("jobEgressCidrs", [], "is empty: builds could not pull base images or push")
        if not self.gitlab_cidrs:
            raise RuleViolation(
                "gitlabCidrs", [], "is empty: the runner manager could not reach GitLab; list GitLab's addresses (or 0.0.0.0/0 and ::/0)"
            )
        if not self.private_cidrs:
            raise RuleViolation(
                "privateCidrs",
                [],
                "is empty: jobs (code from any branch) could reach every cluster and VPC address the allow-list covers; "
                "list at least the cluster's pod, service and node ranges (the default is RFC 1918, CGNAT and ULA)",
            )
        return self

    @model_validator(mode="after")
    def _metadata_addresses_are_excluded(self) -> NetworkConfig:
        needed = [ipaddress.ip_address(a) for a in METADATA_ADDRESSES]
        networks = [ipaddress.ip_network(c) for c in self.metadata_cidrs]
        missing = [str(a) for a in needed if not any(a.version == n.version and a in n for n in networks)]
        if missing:
            raise RuleViolation(
                "metadataCidrs",
                self.metadata_cidrs,
                f"must cover {', '.join(missing)}: instance metadata and the EKS Pod Identity agent hand out node "
                "and pod credentials, so jobs must never reach them",
            )
        return self

    @model_validator(mode="after")
    def _job_egress_outside_excluded(self) -> NetworkConfig:
        # An allowed range inside an always-excluded one would be empty after exclusion (and Kubernetes
        # rejects an `except` that is not inside its `cidr`): refuse it here, before any resource exists.
        for cidr in self.job_egress_cidrs:
            allowed = ipaddress.ip_network(cidr)
            for excluded in self.excluded_networks():
                if excluded.version == allowed.version and allowed.subnet_of(excluded):  # type: ignore[arg-type]
                    raise RuleViolation(
                        "jobEgressCidrs",
                        cidr,
                        f"lies inside the always-excluded range {excluded} (metadataCidrs, apiServerCidrs or "
                        "privateCidrs): jobs could reach nothing through it; allow a range outside them",
                    )
        return self

    def excluded_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        """Ranges no job may reach, whatever jobEgressCidrs allows."""
        return [ipaddress.ip_network(c) for c in [*self.metadata_cidrs, *self.api_server_cidrs, *self.private_cidrs]]
