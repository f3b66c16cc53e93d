"""ECR: one repository per application and one build-cache repository, each with a lifecycle policy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from .aws_account import AwsAccount
from .aws_documents import CACHE_TAG_PREFIX, application_lifecycle, cache_lifecycle, pull_repository_policy, to_json, validate_lifecycle
from .config import RegistryConfig, project_key
from .marks import APPLICATION_ROLE, BUILD_CACHE_ROLE, REPOSITORY_ROLE_TAG, component_type


def _checked(policy: dict) -> str:
    problems = validate_lifecycle(policy)
    if problems:  # a builder bug, not a user error: fail before anything is registered
        raise ValueError("generated lifecycle policy is invalid: " + "; ".join(problems))
    return to_json(policy)


@dataclass(frozen=True)
class ImageRegistryArgs:
    config: RegistryConfig
    account: AwsAccount


class ImageRegistry(pulumi.ComponentResource):
    """Application repositories are immutable by default; the cache repository is the one mutable exception
    because BuildKit overwrites its cache tag on every build."""

    applications: dict[str, aws.ecr.Repository]
    caches: dict[str, aws.ecr.Repository]  # GitLab project path -> its cache repository
    repository_urls: dict[str, pulumi.Output[str]]
    cache_urls: dict[str, pulumi.Output[str]]
    registry_host: pulumi.Output[str]

    def __init__(self, name: str, args: ImageRegistryArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(component_type("registry", "ImageRegistry"), name, None, opts)
        cfg = args.config
        encryption = [{"encryption_type": cfg.encryption, **({"kms_key": cfg.kms_key_arn} if cfg.kms_key_arn else {})}]
        # Every application shares one lifecycle document: build and check it once, not per repository.
        app_policy = _checked(application_lifecycle(cfg.lifecycle))
        pull_policy = to_json(pull_repository_policy(cfg.pull_principals)) if cfg.pull_principals else None
        self.registry_host = args.account.registry_host()

        def repository(key: str, repo_name: str, role: str, mutability: str, lifecycle: str, **extra: Any) -> aws.ecr.Repository:
            repo = aws.ecr.Repository(
                f"{name}-{key}",
                name=repo_name,
                # The mark the policy pack reads: only the repository tagged as the build cache may be mutable.
                tags={REPOSITORY_ROLE_TAG: role},
                image_tag_mutability=mutability,
                image_scanning_configuration={"scan_on_push": True},
                encryption_configurations=encryption,
                force_delete=cfg.force_delete,
                opts=pulumi.ResourceOptions(parent=self),
                **extra,
            )
            # The repository name is known from config (and so at preview); depends_on keeps the order.
            after_repo = pulumi.ResourceOptions(parent=self, depends_on=[repo])
            aws.ecr.LifecyclePolicy(f"{name}-{key}", repository=repo_name, policy=lifecycle, opts=after_repo)
            if pull_policy:
                aws.ecr.RepositoryPolicy(f"{name}-{key}", repository=repo_name, policy=pull_policy, opts=after_repo)
            return repo

        # Application repositories keep their names and URNs (ecr-<app>) across config shapes.
        self.applications = {
            app: repository(app, cfg.repository_name(app), APPLICATION_ROLE, cfg.image_tag_mutability, app_policy)
            for app in cfg.application_names()
        }
        exclusions = (
            {"image_tag_mutability_exclusion_filters": [{"filter": f"{CACHE_TAG_PREFIX}*", "filter_type": "WILDCARD"}]}
            if cfg.cache_tag_mutability == "IMMUTABLE_WITH_EXCLUSION"
            else {}
        )
        # One cache repository per GitLab project: only that project's identity may write it, so no other
        # project can poison the cache its builds import.
        cache_policy = _checked(cache_lifecycle(cfg.lifecycle))
        self.caches = {
            project: repository(
                f"cache-{project_key(project)}",
                cfg.cache_repository_name(project),
                BUILD_CACHE_ROLE,
                cfg.cache_tag_mutability,
                cache_policy,
                **exclusions,
            )
            for project in cfg.projects()
        }
        self.repository_urls = {
            app: pulumi.Output.concat(self.registry_host, "/", cfg.repository_name(app)) for app in cfg.application_names()
        }
        self.cache_urls = {
            project: pulumi.Output.concat(self.registry_host, "/", cfg.cache_repository_name(project)) for project in cfg.projects()
        }
        self.register_outputs({"registry": self.registry_host, "cacheRepositories": self.cache_urls, "repositories": self.repository_urls})
