"""The identity CI jobs push with: access keys of an IAM user, or a role assumed with GitLab ID tokens."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import model_validator

from .base import ConfigModel
from .fields import Arn, GitlabPath, matching

CredentialsMode = Literal["access-key", "oidc"]
OidcProviderSource = Literal["create", "existing"]
KeySlot = Literal["blue", "green"]


class OidcSubject(ConfigModel):
    """One `sub` claim the role trusts: project_path:<project>:ref_type:<type>:ref:<ref>."""

    project_path: GitlabPath
    """GitLab project path, e.g. 'group/project'."""
    ref_type: Literal["branch", "tag"] = "branch"
    """'branch' or 'tag'."""
    ref: Annotated[str, matching(re.compile(r"[A-Za-z0-9_.*/-]+"), "a branch/tag name or pattern of A-Za-z0-9_.*/-")]
    """Branch or tag name, which must be protected in GitLab: the ID token carries `ref_protected`, but an
    IAM trust policy can test only `aud` and `sub`. A '*' pattern (StringLike): branches only in dev;
    tags everywhere, applied only when a protected-tag rule covers the pattern (cicd.check_protected_refs --require)."""


class CredentialsConfig(ConfigModel):
    mode: CredentialsMode = "access-key"
    """'access-key' (IAM user + key in masked CI variables) or 'oidc' (role assumed with GitLab ID tokens)."""
    # access-key mode: key slots that exist, and the one the CI variables point at (rotation).
    access_key_slots: list[KeySlot] = ["blue"]
    """Access keys that exist (1 or 2 of 'blue', 'green'); two during a rotation."""
    active_access_key: KeySlot = "blue"
    """The slot the CI variables point at."""
    # The IAM OIDC provider that ID tokens are checked against (oidc mode, and previews in any mode).
    oidc_provider: OidcProviderSource = "create"
    """'create' (this stack owns the account's IAM OIDC provider for gitlab.url) or 'existing' (another
    stack in the same account owns it: looked up by gitlab.url; AWS allows one per URL per account)."""
    oidc_provider_arn: Arn | None = None
    """An existing IAM OIDC provider by ARN (implies 'existing'); it must name gitlab.url's host."""
    oidc_subjects: list[OidcSubject] = []
    """Refs of the applications' projects allowed to assume that project's push role (exact and
    protected outside dev)."""

    @model_validator(mode="after")
    def _settings_match_mode(self) -> CredentialsConfig:
        if self.mode == "access-key":
            if not self.access_key_slots or len(set(self.access_key_slots)) != len(self.access_key_slots):
                raise ValueError(f"accessKeySlots {self.access_key_slots} must name 1 or 2 distinct slots")
            if self.active_access_key not in self.access_key_slots:
                raise ValueError(f"activeAccessKey {self.active_access_key!r} is not one of accessKeySlots {self.access_key_slots}")
            if self.oidc_subjects:
                raise ValueError("oidcSubjects are only allowed with mode 'oidc'")
        elif not self.oidc_subjects:
            raise ValueError("mode 'oidc' needs at least one entry in oidcSubjects (the refs allowed to push)")
        return self
