"""gitlab-buildkit-runner: rootless BuildKit CI builds on Kubernetes, pushing to ECR.

Thin on purpose: validate config, build the components, export. Everything else is in components/.
"""

import pulumi

from components.application_project import ApplicationProject, ApplicationProjectArgs, component_name
from components.aws_account import lookup_account
from components.ci_variables import CiVariables, CiVariablesArgs, shared_variable_specs
from components.config import load_config
from components.confined_profiles import confined_profiles_output
from components.namespaces import RunnerNamespaces, RunnerNamespacesArgs
from components.network import NetworkIsolation, NetworkIsolationArgs
from components.preview_access import PreviewAccess, PreviewAccessArgs
from components.providers import build_providers
from components.push_identity import GitlabOidcProvider, GitlabOidcProviderArgs, existing_oidc_provider_arn
from components.rbac import RunnerRbac, RunnerRbacArgs
from components.registry import ImageRegistry, ImageRegistryArgs
from components.runner import GitlabRunner, GitlabRunnerArgs
from components.warm_builder import WarmBuilders, WarmBuildersArgs


def main() -> None:
    cfg = load_config()  # raises before any resource is registered
    providers = build_providers(cfg)
    # An OIDC provider another stack owns is looked up first: a missing one fails before any resource.
    needs_oidc = cfg.needs_oidc_provider()
    owns_oidc = needs_oidc and cfg.credentials.oidc_provider == "create" and not cfg.credentials.oidc_provider_arn
    existing_oidc_arn = (
        existing_oidc_provider_arn(cfg.gitlab.url, cfg.credentials.oidc_provider_arn, providers.aws)
        if needs_oidc and not owns_oidc
        else None
    )
    on_k8s = pulumi.ResourceOptions(providers=[providers.kubernetes])
    # ECR repositories and the push identity are stateful: protected where the config says (prod must).
    on_aws = pulumi.ResourceOptions(providers=[providers.aws], protect=cfg.registry.protect)
    on_gitlab = pulumi.ResourceOptions(providers=[providers.gitlab])

    namespaces = RunnerNamespaces("runner", RunnerNamespacesArgs(cfg.kubernetes, cfg.runner), opts=on_k8s)
    rbac = RunnerRbac(
        "runner",
        RunnerRbacArgs(
            manager_namespace=namespaces.manager_name,
            job_namespace=namespaces.job_name,
            job_automount_service_account_token=cfg.kubernetes.job_automount_service_account_token,
            depends_on=namespaces.namespace_resources,
        ),
        opts=on_k8s,
    )
    isolation = (
        NetworkIsolation(
            "runner",
            NetworkIsolationArgs(
                cfg.network,
                manager_namespace=namespaces.manager_name,
                job_namespace=namespaces.job_name,
                metrics_enabled=cfg.runner.metrics_enabled,
                depends_on=namespaces.namespace_resources,
            ),
            opts=on_k8s,
        )
        if cfg.network.enabled
        else None
    )
    runner = GitlabRunner(
        "buildkit",
        GitlabRunnerArgs(
            cfg.runner,
            environment=cfg.environment,
            gitlab_url=cfg.gitlab.url,
            manager_namespace=namespaces.manager_name,
            job_namespace=namespaces.job_name,
            manager_service_account=rbac.manager_account_name,
            job_service_account=rbac.job_account_name,
            job_automount_service_account_token=cfg.kubernetes.job_automount_service_account_token,
            manager_namespace_resource=namespaces.manager,
            depends_on=[namespaces, rbac, *([isolation] if isolation else [])],
        ),
        opts=pulumi.ResourceOptions(providers=[providers.kubernetes, providers.gitlab]),
    )
    account = lookup_account(cfg.registry.region, providers.aws)
    registry_host = account.registry_host()

    # One GitLab OIDC provider for every role ID tokens assume (push roles, the preview role).
    oidc = (
        GitlabOidcProvider("gitlab-oidc", GitlabOidcProviderArgs(cfg.gitlab.url, cfg.gitlab.host), account, opts=on_aws)
        if owns_oidc
        else None
    )
    oidc_arn = oidc.arn if oidc else existing_oidc_arn

    # builders.mode 'warm': the namespace the projects' daemons run in (each project's daemon is its own).
    builders = (
        WarmBuilders(
            "builders",
            WarmBuildersArgs(
                cfg.runner,
                cfg.builders.warm,
                cfg.network,
                pod_security_version=cfg.kubernetes.pod_security_version,
                job_namespace=namespaces.job_name,
                kubernetes_provider=providers.kubernetes,
                depends_on=[namespaces, runner],
            ),
        )
        if cfg.builders.mode == "warm"
        else None
    )

    # Each application project: its repositories, its cache, its push identity, its CI/CD variables.
    registry = ImageRegistry("ecr", ImageRegistryArgs(cfg.registry, registry_host), opts=on_aws)
    repositories = registry.settings
    projects = {
        project: ApplicationProject(
            component_name(project),
            ApplicationProjectArgs(
                cfg,
                project_path=project,
                applications=apps,
                account=account,
                repositories=repositories,
                registry_host=registry_host,
                aws_provider=providers.aws,
                gitlab_provider=providers.gitlab,
                oidc_provider_arn=oidc_arn,
                oidc_provider=oidc,
                kubernetes_provider=providers.kubernetes,
                builders=builders,
                job_namespace=namespaces.job_name,
            ),
        )
        for project, apps in cfg.registry.projects().items()
    }
    identity_names = {project: p.identity_name for project, p in projects.items()}
    if cfg.gitlab.shared_variables_group:
        CiVariables(
            "ci-shared",
            CiVariablesArgs(
                shared_variable_specs(region=cfg.registry.region, registry_host=registry_host),
                cfg.environment_scope,
                cfg.gitlab.protect_variables,
                group=cfg.gitlab.shared_variables_group,
            ),
            opts=on_gitlab,
        )

    if cfg.preview.project_path is not None:
        assert oidc_arn is not None  # created above whenever preview is on
        kind = "user" if cfg.credentials.mode == "access-key" else "role"
        PreviewAccess(
            "preview",
            PreviewAccessArgs(
                cfg.preview,
                environment=cfg.environment,
                account=account,
                gitlab_url=cfg.gitlab.url,
                gitlab_host=cfg.gitlab.host,
                oidc_provider_arn=oidc_arn,
                repository_names=cfg.registry.repository_names(),
                iam_resources={
                    kind: list(identity_names.values()),
                    "policy": list(identity_names.values()),
                    "oidc-provider": [cfg.gitlab.host],
                },
                manager_namespace=namespaces.manager_name,
                job_namespace=namespaces.job_name,
                project=pulumi.get_project(),
                stack=pulumi.get_stack(),
                aws_provider=providers.aws,
                kubernetes_provider=providers.kubernetes,
                depends_on=[*namespaces.namespace_resources, *([oidc] if oidc else [])],
            ),
        )

    pulumi.export("environment", cfg.environment)
    pulumi.export("managerNamespace", namespaces.manager_name)
    pulumi.export("jobNamespace", namespaces.job_name)
    pulumi.export("jobSecurityMode", cfg.runner.job_security_mode)
    profiles = cfg.runner.confined_profile_names()
    if profiles is not None:
        # What every job node must hold before a job lands there (README "Job security modes").
        pulumi.export("confinedProfiles", confined_profiles_output(profiles))
    pulumi.export("runnerId", runner.runner_id)
    pulumi.export("releaseName", runner.release.name)
    pulumi.export("releaseStatus", runner.release_status)
    pulumi.export("registry", registry_host)
    pulumi.export("repositories", {app: url for p in projects.values() for app, url in p.repository_urls.items()})
    pulumi.export("cacheRepositories", {project: p.cache_url for project, p in projects.items()})
    pulumi.export("credentialsMode", cfg.credentials.mode)
    pulumi.export("pushIdentities", identity_names)
    pulumi.export("builders", cfg.builders.mode)
    if cfg.builders.mode == "warm":
        pulumi.export("warmBuilders", {project: p.warm.address for project, p in projects.items() if p.warm})


if __name__ == "__main__":
    main()
