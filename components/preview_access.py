"""The read-only identity `pulumi preview` uses from this repository's protected branches: an AWS role
GitLab ID tokens of those branches assume, and a Kubernetes ServiceAccount that may only read the
stack's objects (no Secrets). It can show a diff; it cannot change anything or read the runner token.
See README "Merge-request previews: who can see what"."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from .aws_account import AwsAccount, repository_arn
from .aws_documents import gitlab_trust_policy, preview_read_policy, preview_state_statements, to_json
from .config import OidcSubject, PreviewConfig
from .marks import MANAGED_BY, component_type
from .rbac_documents import PREVIEW_CLUSTER_RULES, PREVIEW_NAMESPACED_RULES, preview_rules

PREVIEW_RBAC_NAME = "gitlab-buildkit-runner-preview"


def cluster_scoped_name(manager_namespace: str) -> str:
    """The preview ClusterRole/ClusterRoleBinding name of the stack whose manager lives there."""
    return f"{PREVIEW_RBAC_NAME}-{manager_namespace}"


@dataclass(frozen=True)
class PreviewAccessArgs:
    preview: PreviewConfig
    environment: str
    account: AwsAccount
    gitlab_url: str
    gitlab_host: str
    oidc_provider_arn: pulumi.Input[str]
    repository_names: Sequence[str]
    iam_resources: Mapping[str, Sequence[str]]  # type (user, role, policy, oidc-provider) -> names
    manager_namespace: str
    job_namespace: str
    project: str  # the Pulumi project and stack whose state the preview reads
    stack: str
    aws_provider: pulumi.ProviderResource
    kubernetes_provider: pulumi.ProviderResource
    depends_on: Sequence[pulumi.Resource] = ()


class PreviewAccess(pulumi.ComponentResource):
    role_name: str
    service_account_name: str

    def __init__(self, name: str, args: PreviewAccessArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(component_type("credentials", "PreviewAccess"), name, None, opts)
        account = args.account
        assert args.preview.project_path is not None, "only created when preview.projectPath is set"
        self.role_name = f"gitlab-buildkit-preview-{args.environment}"
        on_aws = pulumi.ResourceOptions(parent=self, provider=args.aws_provider, depends_on=list(args.depends_on))
        subjects = [OidcSubject(project_path=args.preview.project_path, ref_type="branch", ref=ref) for ref in args.preview.refs or []]
        trust = pulumi.Output.from_input(args.oidc_provider_arn).apply(
            lambda arn: to_json(gitlab_trust_policy(arn, args.gitlab_host, args.gitlab_url, subjects))
        )
        repositories = list(args.repository_names)
        assert args.preview.state_bucket is not None and args.preview.refs, "checked by PreviewConfig"
        state_bucket = args.preview.state_bucket
        # Its own role and policy too: a refresh reads them.
        iam_resources = {kind: list(names) for kind, names in args.iam_resources.items()}
        iam_resources.setdefault("role", []).append(self.role_name)
        iam_resources.setdefault("policy", []).append(self.role_name)
        document = pulumi.Output.all(account.partition, account.account_id).apply(
            lambda v: to_json(
                preview_read_policy(
                    [repository_arn(v[0], account.region, v[1], n) for n in repositories],
                    {kind: [f"arn:{v[0]}:iam::{v[1]}:{kind}/{name}" for name in names] for kind, names in iam_resources.items()},
                    preview_state_statements(v[0], state_bucket, args.project, args.stack, args.preview.secrets_key_arn),
                )
            )
        )
        policy = aws.iam.Policy(
            f"{name}-policy", name=self.role_name, description="Read-only preview of gitlab-buildkit-runner", policy=document, opts=on_aws
        )
        role = aws.iam.Role(f"{name}-role", name=self.role_name, assume_role_policy=trust, max_session_duration=3600, opts=on_aws)
        aws.iam.RolePolicyAttachment(
            f"{name}-policy",
            role=self.role_name,
            policy_arn=account.iam_arn(f"policy/{self.role_name}"),
            opts=pulumi.ResourceOptions(parent=self, provider=args.aws_provider, depends_on=[policy, role]),
        )
        # Kubernetes: a ServiceAccount that reads the stack's objects in its two namespaces.
        self.service_account_name = "pulumi-preview"
        on_k8s = pulumi.ResourceOptions(parent=self, provider=args.kubernetes_provider, depends_on=list(args.depends_on))
        account_ref: Any = {"kind": "ServiceAccount", "name": self.service_account_name, "namespace": args.manager_namespace}
        k8s.core.v1.ServiceAccount(
            f"{name}-account",
            metadata={"name": self.service_account_name, "namespace": args.manager_namespace, "labels": MANAGED_BY},
            automount_service_account_token=False,
            opts=on_k8s,
        )
        # Cluster-scoped names are per stack (its manager namespace is unique in the cluster): two stacks
        # in one cluster (dev and staging, say) would otherwise write one ClusterRoleBinding, and the
        # first destroy would take the other's preview access away (found by the real-engine tier).
        cluster_name = cluster_scoped_name(args.manager_namespace)
        cluster_role = k8s.rbac.v1.ClusterRole(
            f"{name}-namespaces",
            metadata={"name": cluster_name, "labels": MANAGED_BY},
            rules=cast(Any, preview_rules(PREVIEW_CLUSTER_RULES)),
            opts=on_k8s,
        )
        k8s.rbac.v1.ClusterRoleBinding(
            f"{name}-namespaces",
            metadata=cast(Any, {"name": cluster_name, "labels": MANAGED_BY}),
            role_ref=cast(Any, {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_name}),
            subjects=[account_ref],
            opts=pulumi.ResourceOptions(parent=self, provider=args.kubernetes_provider, depends_on=[cluster_role]),
        )
        for suffix, namespace in (("manager", args.manager_namespace), ("jobs", args.job_namespace)):
            meta: Any = {"name": PREVIEW_RBAC_NAME, "namespace": namespace, "labels": MANAGED_BY}
            rules = cast(Any, preview_rules(PREVIEW_NAMESPACED_RULES))
            role_resource = k8s.rbac.v1.Role(f"{name}-{suffix}", metadata=meta, rules=rules, opts=on_k8s)
            k8s.rbac.v1.RoleBinding(
                f"{name}-{suffix}",
                metadata=meta,
                role_ref=cast(Any, {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": PREVIEW_RBAC_NAME}),
                subjects=[account_ref],
                opts=pulumi.ResourceOptions(parent=self, provider=args.kubernetes_provider, depends_on=[role_resource]),
            )
        self.register_outputs({"roleName": self.role_name, "serviceAccount": self.service_account_name})
