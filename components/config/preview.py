"""The read-only identity `pulumi preview` runs with from this repository's protected branches."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field, model_validator

from .base import ConfigModel
from .fields import Arn, GitlabPath, matching

TrustedBranch = Annotated[
    str, matching(re.compile(r"[A-Za-z0-9_.*-]+(/[A-Za-z0-9_.*-]+)*"), "a branch name or '*' pattern of A-Za-z0-9_.*/- (no '?')")
]
BucketName = Annotated[str, matching(re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]"), "an S3 bucket name")]


class PreviewConfig(ConfigModel):
    project_path: GitlabPath | None = None
    """This infrastructure repository's GitLab project: its protected `refs` may assume the read-only
    preview role (AWS) and use the read-only preview ServiceAccount (Kubernetes). Unset creates neither;
    merge requests then get only the credential-free desired-state diff (docs/pipeline.md)."""
    refs: list[TrustedBranch] | None = Field(default=None, min_length=1)
    """The protected branches of projectPath the `preview` job runs on (every protected branch but the
    default one): exact names or GitLab protected-branch wildcards such as 'infra/*'. Required with
    projectPath. The deploy job refuses to `pulumi up` while one of them is not covered by a protected-branch
    rule (cicd.check_protected_refs --require); the drift job warns about protected branches not listed."""
    default_branch: Annotated[str, matching(re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*"), "a branch name")] = "main"
    """projectPath's default branch: the deploy jobs run there, never the preview, so the preview role never trusts it."""
    state_bucket: BucketName | None = None
    """S3 bucket of the Pulumi state (PULUMI_BACKEND_URL s3://<bucket>): the role may read this project's
    stack files and the backend's meta.yaml, nothing else. Required with projectPath."""
    secrets_key_arn: Arn | None = None
    """KMS key of the stack's awskms:// secrets provider (key ARN, not alias): the role may kms:Decrypt
    with it. Unset with the passphrase provider (PULUMI_CONFIG_PASSPHRASE)."""

    @model_validator(mode="after")
    def _complete_when_enabled(self) -> PreviewConfig:
        if self.project_path is None:
            return self
        if not self.refs:
            raise ValueError(
                "refs is required with projectPath: list the protected branches the preview job runs on "
                "(exact names or GitLab wildcards such as 'infra/*'; never the default branch)"
            )
        if self.default_branch in self.refs:
            raise ValueError(
                f"refs {self.refs} contain the default branch {self.default_branch!r}: the preview job never runs there "
                "(deploy does), so trusting it would only hand the preview role to every default-branch job"
            )
        if self.state_bucket is None:
            raise ValueError(
                "stateBucket is required with projectPath: the preview reads the stack's state from the S3 backend "
                "(PULUMI_BACKEND_URL s3://<bucket>); the role gets read access to this project's stack files only"
            )
        return self
