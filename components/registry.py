"""ECR: one repository per application and one build-cache repository per project, each with a lifecycle policy
(created inside each project's ApplicationProject)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from .aws_documents import CACHE_TAG_PREFIX, application_lifecycle, cache_lifecycle, pull_repository_policy, to_json, validate_lifecycle
from .config import RegistryConfig, project_key
from .marks import APPLICATION_ROLE, BUILD_CACHE_ROLE, REPOSITORY_ROLE_TAG, component_type


def _checked(policy: dict) -> str:
    problems = validate_lifecycle(policy)
    if problems:  # a builder bug, not a user error: fail before anything is registered
        raise ValueError("generated lifecycle policy is invalid: " + "; ".join(problems))
    return to_json(policy)


# Before 2.0.0 every repository was a child of one ImageRegistry component named "ecr"; each now lives in
# its project's ApplicationProject and carries this old parent as an alias, so none is replaced.
LEGACY_PARENT_TYPE = "registry:ImageRegistry"
LEGACY_PARENT_NAME = "ecr"


def legacy_parent_urn() -> str:
    return (
        f"urn:pulumi:{pulumi.get_stack()}::{pulumi.get_project()}::{component_type(*LEGACY_PARENT_TYPE.split(':'))}::{LEGACY_PARENT_NAME}"
    )


@dataclass(frozen=True)
class RepositorySettings:
    """What every repository of the stack shares, built and checked once per program run."""

    config: RegistryConfig
    application_policy: str
    cache_policy: str
    pull_policy: str | None
    cache_exclusions: dict[str, Any]

    @classmethod
    def of(cls, cfg: RegistryConfig) -> RepositorySettings:
        exclusions = (
            {"image_tag_mutability_exclusion_filters": [{"filter": f"{CACHE_TAG_PREFIX}*", "filter_type": "WILDCARD"}]}
            if cfg.cache_tag_mutability == "IMMUTABLE_WITH_EXCLUSION"
            else {}
        )
        return cls(
            config=cfg,
            application_policy=_checked(application_lifecycle(cfg.lifecycle)),
            cache_policy=_checked(cache_lifecycle(cfg.lifecycle)),
            pull_policy=to_json(pull_repository_policy(cfg.pull_principals)) if cfg.pull_principals else None,
            cache_exclusions=exclusions,
        )


def ecr_repository(
    settings: RepositorySettings,
    key: str,
    repo_name: str,
    role: str,
    mutability: str,
    lifecycle: str,
    opts: pulumi.ResourceOptions,
    **extra: Any,
) -> aws.ecr.Repository:
    """One repository named `ecr-<key>` (its name since 1.0.0), its lifecycle policy and its pull policy."""
    cfg = settings.config
    encryption = [{"encryption_type": cfg.encryption, **({"kms_key": cfg.kms_key_arn} if cfg.kms_key_arn else {})}]
    moved = [pulumi.Alias(parent=legacy_parent_urn())]
    name = f"{LEGACY_PARENT_NAME}-{key}"
    repo = aws.ecr.Repository(
        name,
        name=repo_name,
        # The mark the policy pack reads: only the repository tagged as the build cache may be mutable.
        tags={REPOSITORY_ROLE_TAG: role},
        image_tag_mutability=mutability,
        image_scanning_configuration={"scan_on_push": True},
        encryption_configurations=encryption,
        force_delete=cfg.force_delete,
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(aliases=moved)),
        **extra,
    )
    # The repository name is known from config (and so at preview); depends_on keeps the order.
    after_repo = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[repo], aliases=moved))
    aws.ecr.LifecyclePolicy(name, repository=repo_name, policy=lifecycle, opts=after_repo)
    if settings.pull_policy:
        aws.ecr.RepositoryPolicy(name, repository=repo_name, policy=settings.pull_policy, opts=after_repo)
    return repo


def application_repository(settings: RepositorySettings, app: str, opts: pulumi.ResourceOptions) -> aws.ecr.Repository:
    """Application repositories are immutable by default (release tags never move)."""
    cfg = settings.config
    return ecr_repository(
        settings, app, cfg.repository_name(app), APPLICATION_ROLE, cfg.image_tag_mutability, settings.application_policy, opts
    )


def cache_repository(settings: RepositorySettings, project: str, opts: pulumi.ResourceOptions) -> aws.ecr.Repository:
    """The one mutable exception (BuildKit overwrites its cache tag on every build), one per GitLab project:
    only that project's identity may write it, so no other project can poison the cache its builds import."""
    cfg = settings.config
    return ecr_repository(
        settings,
        f"cache-{project_key(project)}",
        cfg.cache_repository_name(project),
        BUILD_CACHE_ROLE,
        cfg.cache_tag_mutability,
        settings.cache_policy,
        opts,
        **settings.cache_exclusions,
    )


@dataclass(frozen=True)
class ImageRegistryArgs:
    config: RegistryConfig
    registry_host: pulumi.Input[str]


class ImageRegistry(pulumi.ComponentResource):
    """The account's registry: its host and the settings every repository shares. The repositories
    themselves live in their projects (ApplicationProject). Kept as a component, with its 1.x name, so
    the upgrade deletes nothing: in prod it was created protected, and the engine refuses to delete a
    protected resource without `pulumi state unprotect`."""

    settings: RepositorySettings
    registry_host: pulumi.Input[str]

    def __init__(self, name: str, args: ImageRegistryArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        assert name == LEGACY_PARENT_NAME, "the repositories' aliases name this component"
        super().__init__(component_type(*LEGACY_PARENT_TYPE.split(":")), name, None, opts)
        self.settings = RepositorySettings.of(args.config)
        self.registry_host = args.registry_host
        self.register_outputs({"registry": args.registry_host})
