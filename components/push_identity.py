"""The identity CI jobs push with: an IAM user with access keys, or a role GitLab ID tokens assume."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from .aws_account import AwsAccount, repository_arn
from .aws_documents import gitlab_trust_policy, push_policy, to_json
from .config import CredentialsConfig
from .marks import component_type


@dataclass(frozen=True)
class PushIdentityArgs:
    credentials: CredentialsConfig
    environment: str
    gitlab_url: str  # the OIDC issuer and audience (oidc mode)
    gitlab_host: str  # the prefix of the trust policy's condition keys (oidc mode)
    account: AwsAccount
    repository_names: Sequence[str]


class PushIdentity(pulumi.ComponentResource):
    """Same permissions in both modes: push/pull on exactly the stack's repositories, plus registry login.

    Every document and ARN is built from names known in config plus the account lookup, so all of
    them are known at preview and the pack's fail-closed IAM policies can check them then.
    """

    policy: aws.iam.Policy
    user: aws.iam.User | None = None
    access_keys: dict[str, aws.iam.AccessKey]
    role: aws.iam.Role | None = None
    oidc_provider: aws.iam.OpenIdConnectProvider | None = None
    access_key_id: pulumi.Output[str] | None = None
    secret_access_key: pulumi.Output[str] | None = None
    role_arn: pulumi.Output[str] | None = None

    def __init__(self, name: str, args: PushIdentityArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(component_type("credentials", "PushIdentity"), name, None, opts)
        account = args.account
        child = pulumi.ResourceOptions(parent=self)
        self.access_keys = {}
        identity_name = f"gitlab-buildkit-push-{args.environment}"
        names = list(args.repository_names)
        # One apply for the whole document, whatever the number of repositories.
        document = pulumi.Output.all(account.partition, account.account_id).apply(
            lambda v: to_json(push_policy([repository_arn(v[0], account.region, v[1], n) for n in names]))
        )
        self.policy = aws.iam.Policy(
            f"{name}-policy",
            name=identity_name,
            description=f"Push/pull to the {args.environment} BuildKit ECR repositories (gitlab-buildkit-runner)",
            policy=document,
            opts=child,
        )
        # Known at preview (unlike self.policy.arn); depends_on keeps the creation order.
        policy_arn = account.iam_arn(f"policy/{identity_name}")
        creds = args.credentials
        if creds.mode == "access-key":
            self.user = aws.iam.User(f"{name}-ci", name=identity_name, opts=child)
            aws.iam.UserPolicyAttachment(
                f"{name}-policy",
                user=identity_name,
                policy_arn=policy_arn,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.policy, self.user]),
            )
            # Two slots allow rotation without downtime: create the new one, switch activeAccessKey, drop the old.
            # Children inherit `protect` from the component (prod protects it), and a protected key could
            # never be dropped in step 3 of the rotation: keys are explicitly unprotected, the user and
            # its policy stay protected. Ref: pulumi/pulumi sdk/python/lib/pulumi/resource.py
            # (opts.protect = parent's protect when unset).
            rotating = pulumi.ResourceOptions(parent=self, protect=False)
            for slot in creds.access_key_slots:
                self.access_keys[slot] = aws.iam.AccessKey(f"{name}-{slot}", user=self.user.name, opts=rotating)
            active = self.access_keys[creds.active_access_key]
            self.access_key_id = active.id
            self.secret_access_key = pulumi.Output.secret(active.secret)
            outputs = {"userName": self.user.name, "accessKeyId": self.access_key_id}
        else:
            host = args.gitlab_host
            provider_arn: pulumi.Input[str]
            role_depends: list[pulumi.Resource] = []
            if creds.oidc_provider_arn:
                provider_arn = creds.oidc_provider_arn
            else:
                self.oidc_provider = aws.iam.OpenIdConnectProvider(
                    f"{name}-gitlab", url=args.gitlab_url, client_id_lists=[args.gitlab_url], opts=child
                )
                provider_arn = account.iam_arn(f"oidc-provider/{host}")
                role_depends.append(self.oidc_provider)
            trust = pulumi.Output.from_input(provider_arn).apply(
                lambda arn: to_json(gitlab_trust_policy(arn, host, args.gitlab_url, creds.oidc_subjects))
            )
            self.role = aws.iam.Role(
                f"{name}-ci",
                name=identity_name,
                assume_role_policy=trust,
                max_session_duration=3600,
                opts=pulumi.ResourceOptions(parent=self, depends_on=role_depends),
            )
            aws.iam.RolePolicyAttachment(
                f"{name}-policy",
                role=identity_name,
                policy_arn=policy_arn,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.policy, self.role]),
            )
            self.role_arn = account.iam_arn(f"role/{identity_name}")
            outputs = {"roleArn": self.role_arn}
        self.register_outputs({"policyArn": policy_arn, **outputs})
