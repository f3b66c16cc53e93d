"""ECR: the application repositories, the build-cache repository and their lifecycle."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from .base import ConfigModel, RuleViolation
from .ci_names import repository_variable
from .fields import AWS_REGION, Arn, EcrName, GitlabPath, matching


def _release_pattern(value: str) -> str:
    # Ref: https://docs.aws.amazon.com/AmazonECR/latest/userguide/lifecycle_policy_parameters.html
    # (tagPatternList: '*' wildcards, at most 4 per pattern)
    if not re.fullmatch(r"[A-Za-z0-9._*-]{1,128}", value) or value.count("*") > 4 or not value.strip("*"):
        raise ValueError(
            "must be an ECR tag pattern such as 'v*' or '*.*': tag characters and at most 4 '*' wildcards, "
            "not only wildcards (that would keep every image forever)"
        )
    return value


class Lifecycle(ConfigModel):
    untagged_expire_days: int = Field(7, ge=1, le=3650)
    """Application repositories: expire untagged images after this many days."""
    keep_tagged_count: int = Field(100, ge=1, le=10000)
    """Application repositories: keep this many newest images that carry no release tag."""
    release_tag_patterns: list[Annotated[str, AfterValidator(_release_pattern)]] = Field(default=["v*", "*.*"], min_length=1, max_length=10)
    """Tags of release images (git tags pushed under their own name), which keepTaggedCount never
    expires: 'v*' and any tag with a dot (branch and commit tags never contain one)."""
    cache_expire_days: int = Field(14, ge=1, le=3650)
    """Cache repository: expire cache images not pushed for this many days."""


# 'cache-' + application + '.' + ref slug (at most 63) must fit an image tag (128 characters).
MAX_APPLICATION_NAME = 128 - len("cache-") - 1 - 63


def project_key(project_path: str) -> str:
    """A GitLab project path as a name part: 'acme/web-api' -> 'acme-web-api' (lowercase)."""
    return re.sub(r"[^a-z0-9]+", "-", project_path.lower()).strip("-")


def _application(value: object) -> object:
    if isinstance(value, str):
        raise ValueError(
            f"name the application's GitLab project: {{name: {value}, projectPath: <group>/<project>}} "
            "(its push identity, cache and CI/CD variables belong to that project; see UPGRADE.md)"
        )
    return value


class Application(ConfigModel):
    """One application: its ECR repository and the GitLab project that builds it."""

    name: EcrName
    """Repository name after the prefix (ECR rules); the build template's `app` input."""
    project_path: GitlabPath
    """GitLab project that builds it: gets the push credentials and CI/CD variables; applications
    of one project share its push identity and cache repository (one trust boundary)."""


class RegistryConfig(ConfigModel):
    region: Annotated[str, matching(AWS_REGION, "an AWS region such as 'eu-west-1'")]
    """AWS region of the repositories (also the explicit AWS provider's region)."""
    repository_prefix: EcrName | None = None
    """Prefix of every repository name: '<prefix>/<application>'."""
    applications: list[Annotated[Application, BeforeValidator(_application)]] = Field(min_length=1)
    """Applications: {name, projectPath}; one repository and one CI variable ECR_REPOSITORY_<NAME> each."""
    cache_repository: EcrName = "buildkit-cache"
    """Path of the BuildKit cache repositories (after the prefix): one per GitLab project,
    '<prefix>/<cacheRepository>/<project key>', writable only by that project's identity."""
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
        names = self.application_names()
        if len(set(names)) != len(names):
            dupes = sorted({a for a in names if names.count(a) > 1})
            raise ValueError(f"applications has duplicates: {dupes}")
        variables: dict[str, str] = {}
        for app in names:
            variable = repository_variable(app)
            if variable in variables:
                raise ValueError(f"applications {variables[variable]!r} and {app!r} map to the same CI variable {variable}; rename one")
            variables[variable] = app
        for index, app in enumerate(names):
            if len(app) > MAX_APPLICATION_NAME:
                raise RuleViolation(
                    f"applications.{index}.name",
                    app,
                    f"is longer than {MAX_APPLICATION_NAME} characters: the build template's cache tag "
                    f"'cache-<application>.<ref slug>' must fit the 128 characters of an image tag",
                )
        keys: dict[str, str] = {}
        for path in self.projects():
            key = project_key(path)
            if key in keys and keys[key] != path:
                raise ValueError(f"projects {keys[key]!r} and {path!r} map to the same name part {key!r}; they cannot both build here")
            keys[key] = path
        if any(n == self.cache_repository or n.startswith(f"{self.cache_repository}/") for n in names):
            raise ValueError(f"cacheRepository {self.cache_repository!r} is also an application (or contains one)")
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

    def application_names(self) -> list[str]:
        return [a.name for a in self.applications]

    def projects(self) -> dict[str, list[str]]:
        """GitLab project path -> its applications, in config order."""
        result: dict[str, list[str]] = {}
        for app in self.applications:
            result.setdefault(app.project_path, []).append(app.name)
        return result

    def cache_repository_name(self, project_path: str) -> str:
        return self.repository_name(f"{self.cache_repository}/{project_key(project_path)}")

    def repository_names(self) -> list[str]:
        return [*(self.repository_name(a) for a in self.application_names()), *(self.cache_repository_name(p) for p in self.projects())]
