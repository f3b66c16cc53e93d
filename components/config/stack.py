"""The whole stack configuration and the rules that span its sections."""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from .base import ConfigModel
from .credentials import CredentialsConfig
from .fields import is_pinned_image
from .gitlab import GitlabConfig
from .kubernetes import KubernetesConfig
from .network import NetworkConfig
from .registry import RegistryConfig
from .runner import RunnerConfig

Environment = Literal["dev", "staging", "prod"]


class StackConfig(ConfigModel):
    environment: Environment
    """dev, staging or prod; prod enforces pinning and protection."""
    kubernetes: KubernetesConfig = KubernetesConfig()
    """Kubernetes provider and namespaces."""
    runner: RunnerConfig
    """The GitLab runner and its job pods."""
    registry: RegistryConfig
    """ECR repositories."""
    credentials: CredentialsConfig = CredentialsConfig()
    """Push identity for CI jobs."""
    gitlab: GitlabConfig
    """GitLab instance and where CI/CD variables go."""
    network: NetworkConfig = NetworkConfig()
    """NetworkPolicies for the runner namespaces."""

    @model_validator(mode="after")
    def _prod_is_pinned_and_protected(self) -> StackConfig:
        if self.environment == "prod":
            problems = []
            if not is_pinned_image(self.runner.job_image):
                problems.append(f"runner.jobImage {self.runner.job_image!r} must be pinned to a version tag or digest")
            if self.runner.helper_image and not is_pinned_image(self.runner.helper_image):
                problems.append(f"runner.helperImage {self.runner.helper_image!r} must be pinned")
            if self.registry.image_tag_mutability != "IMMUTABLE":
                problems.append("registry.imageTagMutability must be 'IMMUTABLE' (release tags must never move)")
            if not self.registry.protect:
                problems.append("registry.protect must be true (repositories and push identities are stateful)")
            if self.registry.force_delete:
                problems.append("registry.forceDelete must be false (deleting a repository must not delete images)")
            if problems:
                raise ValueError("prod rules: " + "; ".join(problems))
        return self

    @model_validator(mode="after")
    def _oidc_issuer_has_no_port(self) -> StackConfig:
        if self.credentials.mode == "oidc" and ":" in self.gitlab.url.removeprefix("https://"):
            raise ValueError(
                f"gitlab.url {self.gitlab.url!r} has a port: with credentials.mode 'oidc' it is the OIDC issuer, "
                "whose IAM condition keys are '<host>:aud'/'<host>:sub'; serve GitLab on 443"
            )
        return self

    @property
    def environment_scope(self) -> str:
        return self.gitlab.environment_scope or self.environment
