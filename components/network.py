"""NetworkPolicies: job pods reach DNS and the internet, never the metadata service, the API or the VPC."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from .config import NetworkConfig
from .marks import MANAGED_BY, component_type
from .network_documents import job_network_policies, manager_network_policies


@dataclass(frozen=True)
class NetworkIsolationArgs:
    network: NetworkConfig
    manager_namespace: str
    job_namespace: str
    metrics_enabled: bool  # the manager's metrics port is opened to network.metricsNamespace only when on
    depends_on: Sequence[pulumi.Resource] = ()  # the namespaces (see RunnerRbacArgs)


class NetworkIsolation(pulumi.ComponentResource):
    """Only enforced where the CNI implements NetworkPolicy (see README "Network isolation")."""

    policies: dict[str, k8s.networking.v1.NetworkPolicy]

    def __init__(self, name: str, args: NetworkIsolationArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(component_type("kubernetes", "NetworkIsolation"), name, None, opts)
        child = pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on))
        self.policies = {}
        for namespace, specs in (
            (args.job_namespace, job_network_policies(args.network)),
            (args.manager_namespace, manager_network_policies(args.network, metrics_enabled=args.metrics_enabled)),
        ):
            for policy_name, spec in specs.items():
                self.policies[policy_name] = k8s.networking.v1.NetworkPolicy(
                    f"{name}-{policy_name}",
                    metadata={"name": policy_name, "namespace": namespace, "labels": MANAGED_BY},
                    spec=spec,
                    opts=child,
                )
        self.register_outputs({"policies": sorted(self.policies)})
