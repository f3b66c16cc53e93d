"""The identity CI jobs push with: an IAM user with access keys, or a role GitLab ID tokens assume."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from .aws_documents import gitlab_trust_policy, push_policy, to_json
from .config import StackConfig


@dataclass(frozen=True)
class PushIdentityArgs:
    config: StackConfig
    repository_arns: Sequence[pulumi.Input[str]]


class PushIdentity(pulumi.ComponentResource):
    """Same permissions in both modes: push/pull on exactly the stack's repositories, plus registry login."""

    policy: aws.iam.Policy
    user: aws.iam.User | None = None
    access_keys: dict[str, aws.iam.AccessKey]
    role: aws.iam.Role | None = None
    oidc_provider: aws.iam.OpenIdConnectProvider | None = None
    access_key_id: pulumi.Output[str] | None = None
    secret_access_key: pulumi.Output[str] | None = None
    role_arn: pulumi.Output[str] | None = None

    def __init__(self, name: str, args: PushIdentityArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gitlab-buildkit-runner:credentials:PushIdentity", name, None, opts)
        cfg = args.config
        child = pulumi.ResourceOptions(parent=self)
        self.access_keys = {}
        # One apply over all ARNs: the document is built once, whatever the number of repositories.
        document = pulumi.Output.all(*args.repository_arns).apply(lambda arns: to_json(push_policy(arns)))
        self.policy = aws.iam.Policy(
            f"{name}-policy",
            description=f"Push/pull to the {cfg.environment} BuildKit ECR repositories (gitlab-buildkit-runner)",
            policy=document,
            opts=child,
        )
        creds = cfg.credentials
        if creds.mode == "access-key":
            self.user = aws.iam.User(f"{name}-ci", name=f"gitlab-buildkit-push-{cfg.environment}", opts=child)
            aws.iam.UserPolicyAttachment(f"{name}-policy", user=self.user.name, policy_arn=self.policy.arn, opts=child)
            # Two slots allow rotation without downtime: create the new one, switch activeAccessKey, drop the old.
            for slot in creds.access_key_slots:
                self.access_keys[slot] = aws.iam.AccessKey(f"{name}-{slot}", user=self.user.name, opts=child)
            active = self.access_keys[creds.active_access_key]
            self.access_key_id = active.id
            self.secret_access_key = pulumi.Output.secret(active.secret)
            outputs = {"userName": self.user.name, "accessKeyId": self.access_key_id}
        else:
            host = cfg.gitlab.host
            if creds.oidc_provider_arn:
                provider_arn: pulumi.Input[str] = creds.oidc_provider_arn
            else:
                self.oidc_provider = aws.iam.OpenIdConnectProvider(
                    f"{name}-gitlab", url=cfg.gitlab.url, client_id_lists=[cfg.gitlab.url], opts=child
                )
                provider_arn = self.oidc_provider.arn
            trust = pulumi.Output.from_input(provider_arn).apply(
                lambda arn: to_json(gitlab_trust_policy(arn, host, cfg.gitlab.url, creds.oidc_subjects))
            )
            self.role = aws.iam.Role(
                f"{name}-ci",
                name=f"gitlab-buildkit-push-{cfg.environment}",
                assume_role_policy=trust,
                max_session_duration=3600,
                opts=child,
            )
            aws.iam.RolePolicyAttachment(f"{name}-policy", role=self.role.name, policy_arn=self.policy.arn, opts=child)
            self.role_arn = self.role.arn
            outputs = {"roleArn": self.role_arn}
        self.register_outputs({"policyArn": self.policy.arn, **outputs})
