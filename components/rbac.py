"""Service accounts and the least-privilege Role of the Kubernetes executor."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from .config import StackConfig
from .kube_documents import MANAGED_BY, executor_role_rules

MANAGER_SERVICE_ACCOUNT = "gitlab-runner-manager"
JOB_SERVICE_ACCOUNT = "buildkit-job"


@dataclass(frozen=True)
class RunnerRbacArgs:
    config: StackConfig
    manager_namespace: pulumi.Input[str]
    job_namespace: pulumi.Input[str]


class RunnerRbac(pulumi.ComponentResource):
    """The manager's identity may manage job pods in the job namespace, and nothing else."""

    manager_account: k8s.core.v1.ServiceAccount
    job_account: k8s.core.v1.ServiceAccount
    role: k8s.rbac.v1.Role
    binding: k8s.rbac.v1.RoleBinding
    manager_account_name: pulumi.Output[str]
    job_account_name: pulumi.Output[str]

    def __init__(self, name: str, args: RunnerRbacArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gitlab-buildkit-runner:kubernetes:RunnerRbac", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.manager_account = k8s.core.v1.ServiceAccount(
            f"{name}-manager",
            metadata={"name": MANAGER_SERVICE_ACCOUNT, "namespace": args.manager_namespace, "labels": MANAGED_BY},
            # The manager talks to the API server with this token.
            automount_service_account_token=True,
            opts=child,
        )
        self.job_account = k8s.core.v1.ServiceAccount(
            f"{name}-job",
            metadata={"name": JOB_SERVICE_ACCOUNT, "namespace": args.job_namespace, "labels": MANAGED_BY},
            # Job code comes from every branch: it gets no API token unless configured.
            automount_service_account_token=args.config.kubernetes.job_automount_service_account_token,
            opts=child,
        )
        self.role = k8s.rbac.v1.Role(
            f"{name}-executor",
            metadata={"name": "gitlab-runner-executor", "namespace": args.job_namespace, "labels": MANAGED_BY},
            rules=executor_role_rules(),
            opts=child,
        )
        self.binding = k8s.rbac.v1.RoleBinding(
            f"{name}-executor",
            metadata={"name": "gitlab-runner-executor", "namespace": args.job_namespace, "labels": MANAGED_BY},
            role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": self.role.metadata.apply(lambda m: m["name"])},
            subjects=[{"kind": "ServiceAccount", "name": MANAGER_SERVICE_ACCOUNT, "namespace": args.manager_namespace}],
            opts=child,
        )
        self.manager_account_name = self.manager_account.metadata.apply(lambda m: m["name"])
        self.job_account_name = self.job_account.metadata.apply(lambda m: m["name"])
        self.register_outputs({"managerServiceAccount": self.manager_account_name, "jobServiceAccount": self.job_account_name})
