"""Service accounts and the least-privilege Role of the Kubernetes executor."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from .marks import MANAGED_BY, component_type
from .rbac_documents import executor_role_rules


@dataclass(frozen=True)
class RunnerRbacArgs:
    manager_namespace: str
    job_namespace: str
    # Job code comes from every branch: job pods get an API token only when the config asks for it.
    job_automount_service_account_token: bool
    # What every child waits for (the namespaces): a component's own depends_on does not reach its children.
    depends_on: Sequence[pulumi.Resource] = ()


class RunnerRbac(pulumi.ComponentResource):
    """The manager's identity may manage job pods in the job namespace, and nothing else.

    The service-account names are attributes (`manager_account_name`, `job_account_name`): consumers
    read them from here.
    """

    MANAGER_ACCOUNT = "gitlab-runner-manager"
    JOB_ACCOUNT = "buildkit-job"
    EXECUTOR_ROLE = "gitlab-runner-executor"

    manager_account: k8s.core.v1.ServiceAccount
    job_account: k8s.core.v1.ServiceAccount
    role: k8s.rbac.v1.Role
    binding: k8s.rbac.v1.RoleBinding
    manager_account_name: str
    job_account_name: str

    def __init__(self, name: str, args: RunnerRbacArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(component_type("kubernetes", "RunnerRbac"), name, None, opts)
        self.manager_account_name = self.MANAGER_ACCOUNT
        self.job_account_name = self.JOB_ACCOUNT
        child = pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on))
        self.manager_account = k8s.core.v1.ServiceAccount(
            f"{name}-manager",
            metadata={"name": self.manager_account_name, "namespace": args.manager_namespace, "labels": MANAGED_BY},
            # The manager talks to the API server with this token.
            automount_service_account_token=True,
            opts=child,
        )
        self.job_account = k8s.core.v1.ServiceAccount(
            f"{name}-job",
            metadata={"name": self.job_account_name, "namespace": args.job_namespace, "labels": MANAGED_BY},
            automount_service_account_token=args.job_automount_service_account_token,
            opts=child,
        )
        self.role = k8s.rbac.v1.Role(
            f"{name}-executor",
            metadata={"name": self.EXECUTOR_ROLE, "namespace": args.job_namespace, "labels": MANAGED_BY},
            rules=executor_role_rules(),
            opts=child,
        )
        self.binding = k8s.rbac.v1.RoleBinding(
            f"{name}-executor",
            metadata={"name": self.EXECUTOR_ROLE, "namespace": args.job_namespace, "labels": MANAGED_BY},
            role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": self.EXECUTOR_ROLE},
            subjects=[{"kind": "ServiceAccount", "name": self.manager_account_name, "namespace": args.manager_namespace}],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*args.depends_on, self.role, self.manager_account]),
        )
        self.register_outputs({"managerServiceAccount": self.manager_account_name, "jobServiceAccount": self.job_account_name})
