"""The identities CI jobs push with, one per GitLab project: an IAM user with access keys, or a role
GitLab ID tokens of that project's trusted refs assume. Each may push only to its own project's
application repositories and cache repository."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from .aws_account import AwsAccount, repository_arn
from .aws_documents import gitlab_trust_policy, push_policy, to_json
from .config import CredentialsConfig, OidcSubject, invalid
from .marks import PROJECT, bounded_name, component_type

IAM_NAME_LIMIT = 64  # IAM user and role names


def iam_name(prefix: str, key: str) -> str:
    """`<prefix>-<key>`, shortened with a hash of the key when IAM's 64-character limit needs it."""
    return bounded_name(prefix, key, IAM_NAME_LIMIT)


@dataclass(frozen=True)
class GitlabOidcProviderArgs:
    gitlab_url: str  # issuer and audience
    gitlab_host: str


class GitlabOidcProvider(pulumi.ComponentResource):
    """The IAM OIDC provider for the GitLab host, shared by every role GitLab ID tokens assume."""

    provider: aws.iam.OpenIdConnectProvider
    arn: pulumi.Output[str]

    def __init__(self, name: str, args: GitlabOidcProviderArgs, account: AwsAccount, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(component_type("credentials", "GitlabOidcProvider"), name, None, opts)
        # It lived inside the single PushIdentity "push" before per-project identities: the alias keeps
        # the provider (an IAM OIDC provider per host per account) instead of replacing it.
        old_parent = f"urn:pulumi:{pulumi.get_stack()}::{pulumi.get_project()}::{PROJECT}:credentials:PushIdentity::push"
        self.provider = aws.iam.OpenIdConnectProvider(
            f"{name}-provider",
            url=args.gitlab_url,
            client_id_lists=[args.gitlab_url],
            opts=pulumi.ResourceOptions(parent=self, aliases=[pulumi.Alias(name="push-gitlab", parent=old_parent)]),
        )
        # Known at preview (unlike provider.arn): the fail-closed trust checks read it.
        self.arn = account.iam_arn(f"oidc-provider/{args.gitlab_host}")
        self.register_outputs({"arn": self.arn})


def existing_oidc_provider_arn(gitlab_url: str, arn: str | None, provider: aws.Provider) -> str:
    """The ARN of an IAM OIDC provider another stack owns, looked up now (before any resource), by
    ARN or by gitlab.url. AWS allows one provider per URL per account, so stacks sharing an account
    share it; a missing one is a clear error instead of roles that can never be assumed.

    Ref: https://www.pulumi.com/registry/packages/aws/api-docs/iam/getopenidconnectprovider/
    """
    if arn:
        # An ARN in another account is refused by name: IAM trusts only providers of the role's own
        # account, so every role would exist and none could ever be assumed.
        account = aws.get_caller_identity(opts=pulumi.InvokeOptions(provider=provider)).account_id
        if arn.split(":")[4] != account:
            raise invalid(
                [
                    f"  {PROJECT}:credentials.oidcProviderArn = {arn!r}: is in account {arn.split(':')[4]}, but this stack's "
                    f"AWS provider is in account {account}; an IAM role trusts only its own account's OIDC providers"
                ]
            )
    try:
        found = aws.iam.get_open_id_connect_provider(arn=arn, url=None if arn else gitlab_url, opts=pulumi.InvokeOptions(provider=provider))
    except Exception as exc:  # the provider's error, whatever its type: said once, without a traceback
        key, value = ("credentials.oidcProviderArn", arn) if arn else ("credentials.oidcProvider", "existing")
        raise invalid(
            [
                f"  {PROJECT}:{key} = {value!r}: no IAM OIDC provider for {gitlab_url} "
                f"{'with that ARN ' if arn else ''}in this stack's AWS account ({exc}); deploy the stack that owns it "
                "(credentials.oidcProvider 'create') first, or set credentials.oidcProvider to 'create' here"
            ]
        ) from None
    return str(found.arn)


@dataclass(frozen=True)
class PushIdentityArgs:
    credentials: CredentialsConfig
    identity_name: str
    project_path: str
    account: AwsAccount
    repository_names: Sequence[str]  # the project's application repositories and its cache repository
    # oidc mode: the provider and the project's trusted refs
    gitlab_url: str = ""
    gitlab_host: str = ""
    oidc_provider_arn: pulumi.Input[str] | None = None
    oidc_subjects: Sequence[OidcSubject] = ()
    depends_on: Sequence[pulumi.Resource] = ()


class PushIdentity(pulumi.ComponentResource):
    """Push/pull on exactly one project's repositories, plus registry login.

    Every document and ARN is built from names known in config plus the account lookup, so all of
    them are known at preview and the pack's fail-closed IAM policies can check them then.
    """

    policy: aws.iam.Policy
    user: aws.iam.User | None = None
    access_keys: dict[str, aws.iam.AccessKey]
    role: aws.iam.Role | None = None
    access_key_id: pulumi.Output[str] | None = None
    secret_access_key: pulumi.Output[str] | None = None
    role_arn: pulumi.Output[str] | None = None

    def __init__(self, name: str, args: PushIdentityArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(component_type("credentials", "PushIdentity"), name, None, opts)
        account = args.account
        child = pulumi.ResourceOptions(parent=self)
        self.access_keys = {}
        identity_name = args.identity_name
        names = list(args.repository_names)
        # One apply for the whole document, whatever the number of repositories.
        document = pulumi.Output.all(account.partition, account.account_id).apply(
            lambda v: to_json(push_policy([repository_arn(v[0], account.region, v[1], n) for n in names]))
        )
        self.policy = aws.iam.Policy(
            f"{name}-policy",
            name=identity_name,
            description=f"Push/pull to the BuildKit ECR repositories of {args.project_path} (gitlab-buildkit-runner)",
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
            assert args.oidc_provider_arn is not None and args.oidc_subjects, "config guarantees a provider and subjects"
            subjects = list(args.oidc_subjects)
            trust = pulumi.Output.from_input(args.oidc_provider_arn).apply(
                lambda arn: to_json(gitlab_trust_policy(arn, args.gitlab_host, args.gitlab_url, subjects))
            )
            self.role = aws.iam.Role(
                f"{name}-ci",
                name=identity_name,
                assume_role_policy=trust,
                max_session_duration=3600,
                opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on)),
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
