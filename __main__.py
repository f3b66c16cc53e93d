"""gitlab-buildkit-runner: rootless BuildKit CI builds on Kubernetes, pushing to ECR.

Thin on purpose: validate config, build the components, export. Everything else is in components/.
"""

import pulumi

from components.aws_account import lookup_account
from components.ci_variables import CiVariables, CiVariablesArgs
from components.config import load_config
from components.namespaces import RunnerNamespaces, RunnerNamespacesArgs
from components.network import NetworkIsolation, NetworkIsolationArgs
from components.providers import build_providers
from components.push_identity import PushIdentity, PushIdentityArgs
from components.rbac import RunnerRbac, RunnerRbacArgs
from components.registry import ImageRegistry, ImageRegistryArgs
from components.runner import GitlabRunner, GitlabRunnerArgs


def main() -> None:
    cfg = load_config()  # raises before any resource is registered
    providers = build_providers(cfg)
    on_k8s = pulumi.ResourceOptions(providers=[providers.kubernetes])
    # ECR repositories and the push identity are stateful: protected where the config says (prod must).
    on_aws = pulumi.ResourceOptions(providers=[providers.aws], protect=cfg.registry.protect)

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
    registry = ImageRegistry("ecr", ImageRegistryArgs(cfg.registry, account), opts=on_aws)
    identity = PushIdentity(
        "push",
        PushIdentityArgs(
            cfg.credentials,
            environment=cfg.environment,
            gitlab_url=cfg.gitlab.url,
            gitlab_host=cfg.gitlab.host,
            account=account,
            repository_names=registry.repository_names,
        ),
        opts=on_aws,
    )
    CiVariables(
        "ci",
        CiVariablesArgs(
            cfg.gitlab,
            environment_scope=cfg.environment_scope,
            region=cfg.registry.region,
            credentials_mode=cfg.credentials.mode,
            registry_host=registry.registry_host,
            repository_urls=registry.repository_urls,
            cache_url=registry.cache_url,
            access_key_id=identity.access_key_id,
            secret_access_key=identity.secret_access_key,
            role_arn=identity.role_arn,
        ),
        opts=pulumi.ResourceOptions(providers=[providers.gitlab]),
    )

    pulumi.export("environment", cfg.environment)
    pulumi.export("managerNamespace", namespaces.manager_name)
    pulumi.export("jobNamespace", namespaces.job_name)
    pulumi.export("jobSecurityMode", cfg.runner.job_security_mode)
    pulumi.export("runnerId", runner.runner_id)
    pulumi.export("releaseName", runner.release.name)
    pulumi.export("releaseStatus", runner.release_status)
    pulumi.export("registry", registry.registry_host)
    pulumi.export("repositories", registry.repository_urls)
    pulumi.export("cacheRepository", registry.cache_url)
    pulumi.export("credentialsMode", cfg.credentials.mode)
    if identity.role_arn is not None:
        pulumi.export("pushRoleArn", identity.role_arn)
    if identity.access_key_id is not None:
        pulumi.export("pushAccessKeyId", identity.access_key_id)


if __name__ == "__main__":
    main()
