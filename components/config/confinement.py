"""The `confined` job security mode: which node OSes it supports, and the names of its Localhost profiles.

One home for the profile names: the runner's pod_spec patch, the job namespace's marks (read by the
policy pack), the profile files the node bootstrap writes and the stack outputs all take them from
`RunnerConfig.confined_profile_names()`, which reads this section.

Ref: https://github.com/kubernetes/kubernetes/blob/v1.34.4/pkg/apis/core/validation/validation.go
     (validateSeccompProfileField: a Localhost seccomp profile is a descending relative path without
     '..'; ValidateAppArmorProfileField: a Localhost AppArmor profile is a name without padding)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import AfterValidator

from .base import ConfigModel

NodeOs = Literal["eks-al2023", "bottlerocket", "ubuntu-22.04", "ubuntu-24.04", "kind-ubuntu"]

# The profile content this name stands for is pinned by components/confined_profiles.PROFILE_SHA256:
# a different profile gets a new name, so a node with the old file never runs a job under a name
# that now means something else.
DEFAULT_SECCOMP_PROFILE = "gitlab-buildkit-runner/rootless-buildkit-v1.json"
DEFAULT_APPARMOR_PROFILE = "gitlab-buildkit-runner-rootless-buildkit-v1"
KUBELET_SECCOMP_ROOT = "/var/lib/kubelet/seccomp"  # the kubelet's default seccomp profile root
# The pinned RuntimeDefault is containerd's profile for amd64 (its architectures and arch-specific rules).
ARCH_LABEL = "kubernetes.io/arch"
CONFINED_ARCH = "amd64"


@dataclass(frozen=True)
class NodeOsFacts:
    confined: str | None  # why `confined` is unsupported there; None = supported
    apparmor_abi: str | None  # the node's AppArmor policy ABI (None: no AppArmor on the node)
    baseline: str | None  # why `baseline` cannot build there; None = it can


NODE_OS: dict[str, NodeOsFacts] = {
    # Ref: https://docs.aws.amazon.com/linux/al2023/ug/selinux-modes.html (SELinux permissive, no AppArmor)
    "eks-al2023": NodeOsFacts(confined=None, apparmor_abi=None, baseline=None),
    "bottlerocket": NodeOsFacts(
        confined=(
            "Bottlerocket's host file system is read-only and its SELinux policy confines containers; placing a "
            "Localhost profile needs a bootstrap container, and rootless BuildKit there is unverified by this project"
        ),
        apparmor_abi=None,
        baseline=(
            "Bottlerocket's defaults leave no user namespaces to unprivileged processes and confine containers with "
            "SELinux; rootless BuildKit there is untested by this project, so run builds on an EKS AL2023 node group"
        ),
    ),
    # containerd applies its default AppArmor profile (`deny mount,`) when a pod names none.
    # Ref: https://github.com/containerd/containerd/blob/v2.1.4/contrib/apparmor/template.go
    "ubuntu-22.04": NodeOsFacts(
        confined=None,
        apparmor_abi="3.0",
        baseline="containerd's default AppArmor profile denies mount(2), so rootlesskit fails ('failed to share mount point')",
    ),
    # Ubuntu 24.04 also sets kernel.apparmor_restrict_unprivileged_userns=1: only a profile with a
    # `userns` rule may create user namespaces. Ref: https://ubuntu.com/blog/ubuntu-23-10-restricted-unprivileged-user-namespaces
    "ubuntu-24.04": NodeOsFacts(
        confined=None,
        apparmor_abi="4.0",
        baseline="containerd's default AppArmor profile denies mount(2) and has no userns rule, so rootlesskit fails",
    ),
    "kind-ubuntu": NodeOsFacts(
        confined=(
            "a kind node is a container: Localhost profiles must be mounted into every node (extraMounts) and an "
            "AppArmor profile loaded into the host's kernel, outside the cluster's life cycle; use 'baseline' or "
            "'unconfined' for a dev cluster"
        ),
        apparmor_abi=None,
        baseline=None,
    ),
}

SECCOMP_PATH = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(?:/[A-Za-z0-9][A-Za-z0-9._-]*)*\.json")
APPARMOR_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def _seccomp_path(value: str) -> str:
    if len(value) > 255 or not SECCOMP_PATH.fullmatch(value) or ".." in value.split("/"):
        raise ValueError(
            f"must be a Localhost seccomp profile path: relative to the kubelet's seccomp directory ({KUBELET_SECCOMP_ROOT}), "
            "'/'-separated names of letters, digits, '.', '_' and '-' (no leading '/', no '.' or '..' element, "
            f"at most 255 characters), ending in '.json', such as {DEFAULT_SECCOMP_PROFILE!r}"
        )
    return value


def _apparmor_name(value: str) -> str:
    if len(value) > 100 or not APPARMOR_NAME.fullmatch(value):
        raise ValueError(
            "must be an AppArmor profile name of letters, digits, '.', '_' and '-' (at most 100 characters, no '/', "
            f"no whitespace), such as {DEFAULT_APPARMOR_PROFILE!r}"
        )
    return value


SeccompProfilePath = Annotated[str, AfterValidator(_seccomp_path)]
AppArmorProfileName = Annotated[str, AfterValidator(_apparmor_name)]


class ConfinedProfiles(ConfigModel):
    seccomp: SeccompProfilePath = DEFAULT_SECCOMP_PROFILE
    """Localhost seccomp profile of the build container, relative to the kubelet's seccomp directory."""
    app_armor: AppArmorProfileName = DEFAULT_APPARMOR_PROFILE
    """Localhost AppArmor profile of the build container (used on node OSes with AppArmor only)."""


@dataclass(frozen=True)
class ProfileNames:
    """The Localhost profiles a confined build container runs under (apparmor None: the node has none)."""

    seccomp: str
    apparmor: str | None
    apparmor_abi: str | None
