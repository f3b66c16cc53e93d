"""The GitLab instance and where the CI/CD variables go."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import model_validator

from .base import ConfigModel
from .fields import GitlabPath, matching


class GitlabConfig(ConfigModel):
    url: Annotated[str, matching(re.compile(r"https://[a-z0-9.-]+(:[0-9]+)?"), "an https URL with no path, e.g. 'https://gitlab.com'")]
    """GitLab base URL (https, no path); also the OIDC issuer and audience."""
    variables_project: GitlabPath | None = None
    """Project path that receives the CI/CD variables (or use variablesGroup)."""
    variables_group: GitlabPath | None = None
    """Group path that receives the CI/CD variables (or use variablesProject)."""
    environment_scope: Annotated[str, matching(re.compile(r"[A-Za-z0-9_/*.-]+"), "a GitLab environment name or wildcard")] | None = None
    """environment_scope of the variables; unset uses the environment name."""
    protect_variables: bool = True
    """Mark non-credential variables protected (credentials always are)."""

    @property
    def host(self) -> str:
        return self.url.removeprefix("https://").split(":")[0]

    @model_validator(mode="after")
    def _one_variables_target(self) -> GitlabConfig:
        if (self.variables_project is None) == (self.variables_group is None):
            raise ValueError("set exactly one of variablesProject or variablesGroup (where CI variables are written)")
        return self
