"""Everything one GitLab application project has in one environment: the ECR repositories of its
applications and its build-cache repository, the identity its build jobs push with, its warm BuildKit
daemon (builders.mode 'warm'), and the CI/CD variables that hand them to its jobs. One component per project, so the program reads as the list of
what a stack is made of, and a project's pieces are created, protected and removed together.

Every child kept its name and gained an alias for where it lived before 2.0.0 (repositories under the
ImageRegistry "ecr", identities and variables at the top level): no resource is replaced
(tests/fixtures/urns.json and the engine tier's upgrade scenario prove it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi

from .aws_account import AwsAccount
from .ci_variables import CiVariable, CiVariables, CiVariablesArgs, project_variable_specs, shared_variable_specs
from .config import StackConfig, project_key
from .marks import component_type
from .push_identity import PushIdentity, PushIdentityArgs, iam_name
from .registry import RepositorySettings, application_repository, cache_repository
from .warm_builder import WarmBuilder, WarmBuilderArgs, WarmBuilders

ROOT = pulumi.ROOT_STACK_RESOURCE


@dataclass(frozen=True)
class ApplicationProjectArgs:
    config: StackConfig
    project_path: str
    applications: Sequence[str]
    account: AwsAccount
    repositories: RepositorySettings
    registry_host: pulumi.Input[str]
    aws_provider: pulumi.ProviderResource
    gitlab_provider: pulumi.ProviderResource
    oidc_provider_arn: pulumi.Input[str] | None = None
    oidc_provider: pulumi.Resource | None = None
    # builders.mode 'warm': where the project's daemon runs
    kubernetes_provider: pulumi.ProviderResource | None = None
    builders: WarmBuilders | None = None
    job_namespace: str = ""


def component_name(project_path: str) -> str:
    return f"project-{project_key(project_path)}"


def identity_name(cfg: StackConfig, project_path: str) -> str:
    return iam_name(f"gitlab-buildkit-push-{cfg.environment}", project_key(project_path))


class ApplicationProject(pulumi.ComponentResource):
    repository_urls: dict[str, pulumi.Output[str]]
    cache_url: pulumi.Output[str]
    identity: PushIdentity
    identity_name: str
    variables: CiVariables
    warm: WarmBuilder | None

    def __init__(self, name: str, args: ApplicationProjectArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(component_type("application", "ApplicationProject"), name, None, opts)
        cfg = args.config
        key = project_key(args.project_path)
        registry = cfg.registry
        # Stateful: protected where the config says (prod must); the keys opt out in PushIdentity. The
        # variables never were (a variable is re-created from state in seconds).
        on_aws = pulumi.ResourceOptions(parent=self, provider=args.aws_provider, protect=registry.protect)
        for app in args.applications:
            application_repository(args.repositories, app, on_aws)
        cache_repository(args.repositories, args.project_path, on_aws)
        self.repository_urls = {
            app: pulumi.Output.concat(args.registry_host, "/", registry.repository_name(app)) for app in args.applications
        }
        self.cache_url = pulumi.Output.concat(args.registry_host, "/", registry.cache_repository_name(args.project_path))

        self.identity_name = identity_name(cfg, args.project_path)
        self.identity = PushIdentity(
            f"push-{key}",
            PushIdentityArgs(
                cfg.credentials,
                identity_name=self.identity_name,
                project_path=args.project_path,
                account=args.account,
                repository_names=[
                    *(registry.repository_name(a) for a in args.applications),
                    registry.cache_repository_name(args.project_path),
                ],
                gitlab_url=cfg.gitlab.url,
                gitlab_host=cfg.gitlab.host,
                oidc_provider_arn=args.oidc_provider_arn,
                oidc_subjects=[s for s in cfg.credentials.oidc_subjects if s.project_path == args.project_path],
                depends_on=[args.oidc_provider] if args.oidc_provider else [],
            ),
            opts=pulumi.ResourceOptions(
                parent=self, providers=[args.aws_provider], protect=registry.protect, aliases=[pulumi.Alias(parent=ROOT)]
            ),
        )
        self.warm = None
        if cfg.builders.mode == "warm":
            assert args.kubernetes_provider is not None and args.builders is not None, "warm builders need their namespace"
            self.warm = WarmBuilder(
                f"builder-{key}",
                WarmBuilderArgs(
                    project_key=key,
                    runner=cfg.runner,
                    warm=cfg.builders.warm,
                    namespace=args.builders.namespace,
                    service_account=args.builders.service_account,
                    job_namespace=args.job_namespace,
                    kubernetes_provider=args.kubernetes_provider,
                ),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[args.builders]),
            )
        specs: list[CiVariable] = project_variable_specs(
            credentials_mode=cfg.credentials.mode,
            repository_urls=self.repository_urls,
            cache_url=self.cache_url,
            access_key_id=self.identity.access_key_id,
            secret_access_key=self.identity.secret_access_key,
            role_arn=self.identity.role_arn,
            warm=self.warm,
        )
        if not cfg.gitlab.shared_variables_group:
            specs = [*shared_variable_specs(region=registry.region, registry_host=args.registry_host), *specs]
        self.variables = CiVariables(
            f"ci-{key}",
            CiVariablesArgs(specs, cfg.environment_scope, cfg.gitlab.protect_variables, project=args.project_path),
            opts=pulumi.ResourceOptions(parent=self, providers=[args.gitlab_provider], protect=False, aliases=[pulumi.Alias(parent=ROOT)]),
        )
        self.register_outputs({"repositories": self.repository_urls, "cacheRepository": self.cache_url, "pushIdentity": self.identity_name})
