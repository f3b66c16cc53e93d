"""ECR: the application repositories, the build-cache repository and their lifecycle."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from .base import ConfigModel
from .ci_names import repository_variable
from .fields import AWS_REGION, Arn, EcrName, matching


class Lifecycle(ConfigModel):
    untagged_expire_days: int = Field(7, ge=1, le=3650)
    """Application repositories: expire untagged images after this many days."""
    keep_tagged_count: int = Field(100, ge=1, le=10000)
    """Application repositories: keep this many newest images."""
    cache_expire_days: int = Field(14, ge=1, le=3650)
    """Cache repository: expire cache images not pushed for this many days."""


class RegistryConfig(ConfigModel):
    region: Annotated[str, matching(AWS_REGION, "an AWS region such as 'eu-west-1'")]
    """AWS region of the repositories (also the explicit AWS provider's region)."""
    repository_prefix: EcrName | None = None
    """Prefix of every repository name: '<prefix>/<application>'."""
    applications: list[EcrName] = Field(min_length=1)
    """Application repository names (ECR rules); one CI variable ECR_REPOSITORY_<NAME> each."""
    cache_repository: EcrName = "buildkit-cache"
    """Name of the BuildKit cache repository (after the prefix)."""
    image_tag_mutability: Literal["IMMUTABLE", "MUTABLE"] = "IMMUTABLE"
    """Tag mutability of application repositories; prod requires IMMUTABLE."""
    cache_tag_mutability: Literal["MUTABLE", "IMMUTABLE_WITH_EXCLUSION"] = "MUTABLE"
    """Cache repository: MUTABLE, or IMMUTABLE_WITH_EXCLUSION with a 'cache-*' exclusion."""
    encryption: Literal["AES256", "KMS"] = "AES256"
    """Repository encryption: AES256 or KMS."""
    kms_key_arn: Arn | None = None
    """KMS key ARN (required with encryption KMS)."""
    lifecycle: Lifecycle = Lifecycle()
    """Lifecycle policy parameters."""
    protect: bool = False
    """Protect repositories and the push identity from deletion (prod requires true)."""
    force_delete: bool = False
    """Allow deleting repositories that still hold images (prod requires false)."""
    pull_principals: list[Arn] = []
    """IAM principal ARNs allowed to pull (repository policy); empty creates none."""

    @model_validator(mode="after")
    def _repository_names_are_distinct(self) -> RegistryConfig:
        if len(set(self.applications)) != len(self.applications):
            dupes = sorted({a for a in self.applications if self.applications.count(a) > 1})
            raise ValueError(f"applications has duplicates: {dupes}")
        variables: dict[str, str] = {}
        for app in self.applications:
            variable = repository_variable(app)
            if variable in variables:
                raise ValueError(f"applications {variables[variable]!r} and {app!r} map to the same CI variable {variable}; rename one")
            variables[variable] = app
        if self.cache_repository in self.applications:
            raise ValueError(f"cacheRepository {self.cache_repository!r} is also an application")
        for name in self.repository_names():
            if len(name) > 256:
                raise ValueError(f"repository name {name!r} (prefix + name) is longer than 256 characters")
        return self

    @model_validator(mode="after")
    def _kms_key_matches_encryption(self) -> RegistryConfig:
        if (self.encryption == "KMS") != (self.kms_key_arn is not None):
            raise ValueError("kmsKeyArn is required with encryption 'KMS' and not allowed with 'AES256'")
        return self

    def repository_name(self, app: str) -> str:
        return f"{self.repository_prefix}/{app}" if self.repository_prefix else app

    @property
    def cache_repository_name(self) -> str:
        return self.repository_name(self.cache_repository)

    def repository_names(self) -> list[str]:
        return [self.repository_name(a) for a in [*self.applications, self.cache_repository]]
