"""The two namespaces, labelled for Pod Security Admission, and the job namespace's guard rails."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from .config import KubernetesConfig, RunnerConfig
from .marks import MANAGED_BY, PROJECT, component_type, job_priority_class_name
from .namespace_documents import (
    job_limit_range_spec,
    job_namespace_annotations,
    job_namespace_labels,
    job_quota_spec,
    manager_namespace_labels,
)


@dataclass(frozen=True)
class RunnerNamespacesArgs:
    kubernetes: KubernetesConfig
    # The job pods' settings: the security mode picks the PSA level, the resources the LimitRange.
    runner: RunnerConfig


class RunnerNamespaces(pulumi.ComponentResource):
    """Manager namespace (PSA restricted) and job namespace (the level the job security mode needs)."""

    manager: k8s.core.v1.Namespace
    jobs: k8s.core.v1.Namespace
    limit_range: k8s.core.v1.LimitRange
    quota: k8s.core.v1.ResourceQuota | None
    manager_name: str
    job_name: str

    def __init__(self, name: str, args: RunnerNamespacesArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(component_type("kubernetes", "RunnerNamespaces"), name, None, opts)
        kube = args.kubernetes
        mode = args.runner.job_security_mode
        child = pulumi.ResourceOptions(parent=self)
        self.manager = k8s.core.v1.Namespace(
            f"{name}-manager",
            metadata={"name": kube.manager_namespace, "labels": manager_namespace_labels(kube.pod_security_version)},
            opts=child,
        )
        self.jobs = k8s.core.v1.Namespace(
            f"{name}-jobs",
            metadata={
                "name": kube.job_namespace,
                "labels": job_namespace_labels(mode, kube.pod_security_version),
                "annotations": job_namespace_annotations(mode, args.runner.confined_profile_names()),
            },
            opts=child,
        )
        # Names come from config, so they are known at preview; consumers depend on this component's
        # resources. Every other component gets the names from here, never from config.
        self.manager_name = kube.manager_namespace
        self.job_name = kube.job_namespace
        job_meta = {"namespace": self.job_name, "labels": MANAGED_BY}
        in_jobs = pulumi.ResourceOptions(parent=self, depends_on=[self.jobs])
        self.limit_range = k8s.core.v1.LimitRange(
            f"{name}-job-limits",
            metadata={**job_meta, "name": "buildkit-job-limits"},
            spec=job_limit_range_spec(args.runner),
            opts=in_jobs,
        )
        quota_spec = job_quota_spec(kube.job_quota)
        self.quota = (
            k8s.core.v1.ResourceQuota(
                f"{name}-job-quota", metadata={**job_meta, "name": "buildkit-job-quota"}, spec=quota_spec, opts=in_jobs
            )
            if quota_spec
            else None
        )
        priority = args.runner.job_priority
        # Cluster-scoped, named after the job namespace (two stacks in a cluster never share it); the
        # runner's config.toml names it (priority_class_name) for every job pod.
        self.job_priority_class = k8s.scheduling.v1.PriorityClass(
            f"{name}-job-priority",
            metadata={"name": job_priority_class_name(kube.job_namespace), "labels": MANAGED_BY},
            value=priority.value,
            preemption_policy=priority.preemption_policy,
            global_default=False,
            description=f"CI build jobs of {PROJECT} in namespace {kube.job_namespace}",
            opts=child,
        )
        self.register_outputs({"managerNamespace": self.manager_name, "jobNamespace": self.job_name})

    @property
    def namespace_resources(self) -> list[pulumi.Resource]:
        """What resources in these namespaces wait for (names are plain strings, so no implicit dependency)."""
        return [self.manager, self.jobs]
