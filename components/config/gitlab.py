"""The GitLab instance and where the CI/CD variables go."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import model_validator

from .base import ConfigModel
from .fields import GitlabPath, matching

LEGACY_KEYS = ("variablesProject", "variablesGroup", "variables_project", "variables_group")


class GitlabConfig(ConfigModel):
    url: Annotated[str, matching(re.compile(r"https://[a-z0-9.-]+(:[0-9]+)?"), "an https URL with no path, e.g. 'https://gitlab.com'")]
    """GitLab base URL (https, no path); also the OIDC issuer and audience."""
    shared_variables_group: GitlabPath | None = None
    """Opt-in: a group that receives the non-secret variables every project shares (ECR_REGISTRY,
    AWS_DEFAULT_REGION), scoped to the environment; environment-scoped group variables need GitLab
    Premium. Credentials and repository variables always go to each application's own project."""
    environment_scope: Annotated[str, matching(re.compile(r"[A-Za-z0-9_/*.-]+"), "a GitLab environment name or wildcard")] | None = None
    """environment_scope of the variables; unset uses the environment name."""
    protect_variables: bool = True
    """Mark non-credential variables protected (credentials always are)."""

    @property
    def host(self) -> str:
        return self.url.removeprefix("https://").split(":")[0]

    @model_validator(mode="before")
    @classmethod
    def _no_shared_credentials_target(cls, data: Any) -> Any:
        if isinstance(data, dict):
            legacy = [k for k in LEGACY_KEYS if k in data]
            if legacy:
                raise ValueError(
                    f"{legacy[0]} is gone: each application's credentials and variables go to its own project "
                    "(registry.applications[].projectPath); for shared non-secret variables use sharedVariablesGroup "
                    "(GitLab Premium for environment scopes). See UPGRADE.md 'Per-project push identities'"
                )
        return data
