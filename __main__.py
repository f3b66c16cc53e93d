"""gitlab-buildkit-runner: rootless BuildKit CI builds on Kubernetes, pushing to ECR.

Thin on purpose: validate config, build the components, export. Everything else is in components/.
"""

import pulumi

from components.aws_account import lookup_account
from components.ci_variables import CiVariables, CiVariablesArgs, ci_variable_specs
from components.config import load_config
from components.namespaces import RunnerNamespaces, RunnerNamespacesArgs
from components.network import NetworkIsolation, NetworkIsolationArgs
from components.providers import build_providers
from components.push_identity import PushIdentity, PushIdentityArgs
from components.rbac import JOB_SERVICE_ACCOUNT, RunnerRbac, RunnerRbacArgs
from components.registry import ImageRegistry, ImageRegistryArgs
from components.runner import GitlabRunner, GitlabRunnerArgs


def main() -> None:
    cfg = load_config()  # raises before any resource is registered
    providers = build_providers(cfg)
    on_k8s = pulumi.ResourceOptions(providers=[providers.kubernetes])
    # ECR repositories and the push identity are stateful: protected where the config says (prod must).
    on_aws = pulumi.ResourceOptions(providers=[providers.aws], protect=cfg.registry.protect)

    namespaces = RunnerNamespaces("runner", RunnerNamespacesArgs(cfg), opts=on_k8s)
    # Namespace names are plain config strings (known at preview), so the dependency is explicit.
    both = [namespaces.manager, namespaces.jobs]
    rbac = RunnerRbac("runner", RunnerRbacArgs(cfg, namespaces.manager_name, namespaces.job_name, both), opts=on_k8s)
    isolation = (
        NetworkIsolation("runner", NetworkIsolationArgs(cfg, namespaces.manager_name, namespaces.job_name, both), opts=on_k8s)
        if cfg.network.enabled
        else None
    )
    runner = GitlabRunner(
        "buildkit",
        GitlabRunnerArgs(
            cfg,
            manager_namespace=namespaces.manager_name,
            manager_service_account=rbac.manager_account_name,
            job_service_account=JOB_SERVICE_ACCOUNT,
            manager_namespace_resource=namespaces.manager,
            depends_on=[namespaces, rbac, *([isolation] if isolation else [])],
        ),
        opts=pulumi.ResourceOptions(providers=[providers.kubernetes, providers.gitlab]),
    )
    account = lookup_account(cfg.registry.region, providers.aws)
    registry = ImageRegistry("ecr", ImageRegistryArgs(cfg.registry, account), opts=on_aws)
    identity = PushIdentity("push", PushIdentityArgs(cfg, account, registry.repository_names), opts=on_aws)
    CiVariables(
        "ci",
        CiVariablesArgs(
            cfg,
            ci_variable_specs(
                cfg,
                registry=registry.registry,
                repository_urls=registry.repository_urls,
                cache_url=registry.cache_url,
                access_key_id=identity.access_key_id,
                secret_access_key=identity.secret_access_key,
                role_arn=identity.role_arn,
            ),
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
    pulumi.export("registry", registry.registry)
    pulumi.export("repositories", registry.repository_urls)
    pulumi.export("cacheRepository", registry.cache_url)
    pulumi.export("credentialsMode", cfg.credentials.mode)
    if identity.role_arn is not None:
        pulumi.export("pushRoleArn", identity.role_arn)
    if identity.access_key_id is not None:
        pulumi.export("pushAccessKeyId", identity.access_key_id)


if __name__ == "__main__":
    main()
