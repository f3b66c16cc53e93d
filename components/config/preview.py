"""The read-only identity `pulumi preview` runs with from this repository's protected branches."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field

from .base import ConfigModel
from .fields import GitlabPath, matching

ExactRef = Annotated[str, matching(re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*"), "an exact branch name (no wildcard)")]


class PreviewConfig(ConfigModel):
    project_path: GitlabPath | None = None
    """This infrastructure repository's GitLab project: its protected `refs` may assume the read-only
    preview role (AWS) and use the read-only preview ServiceAccount (Kubernetes). Unset creates neither;
    merge requests then get only the credential-free desired-state diff (docs/pipeline.md)."""
    refs: list[ExactRef] = Field(default=["main"], min_length=1)
    """Protected branches of projectPath allowed to preview (exact names; protect them in GitLab)."""
