"""The `confined` mode's Localhost profiles, as the files a node needs, and the bootstrap that places them.

Delivery is a node bootstrap (README "Job security modes" says why): the stack exports the script,
which writes the seccomp profile under the kubelet's seccomp directory and loads the AppArmor profile
on AppArmor nodes; the runner references the same names (config `runner.confinedProfiles`).

- Seccomp: components/build_seccomp.confined_profile() (containerd's RuntimeDefault plus the measured
  syscalls), serialised canonically; PROFILE_SHA256 pins what DEFAULT_SECCOMP_PROFILE stands for.
- AppArmor: containerd v2.1.4's default container profile with `deny mount,` replaced by `mount,` and
  `pivot_root,` (rootlesskit makes / private and mounts each step's root; runc pivots into it) and, on
  AppArmor 4 nodes (Ubuntu 24.04, kernel.apparmor_restrict_unprivileged_userns=1), `userns,`.
  Mount stays a kernel privilege: the build container's UID 1000 holds no effective capability in the
  container's own user namespace, so `mount,` only works inside the user namespace rootlesskit
  creates. Checked here by AppArmor's own parser (3.0 and 4.1, e2e/tests/test_apparmor_profile.py);
  whether a build passes under it needs an AppArmor node (README manual check).

Ref: https://github.com/containerd/containerd/blob/v2.1.4/contrib/apparmor/template.go
Ref: https://gitlab.com/apparmor/apparmor/-/wikis/AppArmor_Core_Policy_Reference (mount, pivot_root, userns rules)
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .build_seccomp import confined_profile
from .config.confinement import DEFAULT_SECCOMP_PROFILE, KUBELET_SECCOMP_ROOT, ProfileNames

# The content DEFAULT_SECCOMP_PROFILE names. A change to the profile (a new containerd default, another
# syscall) must come with a new default name (…-v2.json) and a new pin: nodes keep the old file until
# their bootstrap runs again, and a name must never mean two profiles.
PROFILE_SHA256 = {DEFAULT_SECCOMP_PROFILE: "d704aca2eb69c59979feb938074f9031d43dca784fd10901c67bae6243680b11"}
APPARMOR_DIR = "/etc/apparmor.d"


def seccomp_profile_text() -> str:
    """The seccomp profile file, canonical (sorted keys, two-space indent, final newline)."""
    return json.dumps(confined_profile(), indent=2, sort_keys=True) + "\n"


def seccomp_profile_sha256(text: str | None = None) -> str:
    """SHA-256 of the seccomp profile file (of `text` when the caller already built it)."""
    return hashlib.sha256((seccomp_profile_text() if text is None else text).encode()).hexdigest()


def apparmor_profile_text(name: str, abi: str) -> str:
    """The AppArmor profile `name` for a node whose AppArmor policy ABI is `abi` ("3.0" or "4.0")."""
    if abi not in ("3.0", "4.0"):
        raise ValueError(f"unknown AppArmor ABI {abi!r}")
    userns = (
        "  # Ubuntu 24.04 lets only profiles with this rule create user namespaces (rootlesskit's child).\n  userns,\n"
        if abi == "4.0"
        else ""
    )
    return f"""# gitlab-buildkit-runner: rootless BuildKit's build container (job security mode 'confined').
# containerd v2.1.4's default container profile, with mount and pivot_root allowed for rootlesskit and runc.
abi <abi/{abi}>,
#include <tunables/global>

profile {name} flags=(attach_disconnected,mediate_deleted) {{
  #include <abstractions/base>

  network,
  capability,
  file,
  umount,
  # containerd's default says `deny mount,`. rootlesskit makes / private and runc mounts each RUN step's
  # root; both run in the user namespace rootlesskit creates, the only place UID 1000 may mount.
  mount,
  pivot_root,
{userns}
  signal (receive) peer=unconfined,
  signal (receive) peer=runc,
  signal (receive) peer=crun,
  signal (send,receive) peer={name},

  deny @{{PROC}}/* w,
  deny @{{PROC}}/{{[^1-9],[^1-9][^0-9],[^1-9s][^0-9y][^0-9s],[^1-9][^0-9][^0-9][^0-9]*}}/** w,
  deny @{{PROC}}/sys/[^k]** w,
  deny @{{PROC}}/sys/kernel/{{?,??,[^s][^h][^m]**}} w,
  deny @{{PROC}}/sysrq-trigger rwklx,
  deny @{{PROC}}/mem rwklx,
  deny @{{PROC}}/kmem rwklx,
  deny @{{PROC}}/kcore rwklx,

  deny /sys/[^f]*/** wklx,
  deny /sys/f[^s]*/** wklx,
  deny /sys/fs/[^c]*/** wklx,
  deny /sys/fs/c[^g]*/** wklx,
  deny /sys/fs/cg[^r]*/** wklx,
  deny /sys/firmware/** rwklx,
  deny /sys/devices/virtual/powercap/** rwklx,
  deny /sys/kernel/security/** rwklx,

  ptrace (trace,tracedby,read,readby) peer={name},
}}
"""


def seccomp_node_path(names: ProfileNames) -> str:
    return f"{KUBELET_SECCOMP_ROOT}/{names.seccomp}"


def node_bootstrap_script(names: ProfileNames) -> str:
    """A POSIX shell script for a node's first boot (EKS launch-template user data, cloud-init): writes the
    profiles under the names the runner uses, loads the AppArmor one, and fails loudly otherwise.

    With GBR_ROOT set (building a node image into a directory) it only writes the files under that root;
    the image's apparmor.service loads /etc/apparmor.d at boot. Quoted here-documents: the profiles reach
    the files byte for byte."""
    seccomp_path = seccomp_node_path(names)
    profile = seccomp_profile_text()
    lines = [
        "#!/bin/sh",
        "# gitlab-buildkit-runner: Localhost profiles for jobSecurityMode 'confined'. Run as root before the kubelet starts.",
        "set -eu",
        'root="${GBR_ROOT:-}"',
        f'mkdir -p "$root{seccomp_path.rsplit("/", 1)[0]}"',
        f"cat > \"$root{seccomp_path}.tmp\" <<'GBR_SECCOMP_EOF'",
        profile.rstrip("\n"),
        "GBR_SECCOMP_EOF",
        f'mv "$root{seccomp_path}.tmp" "$root{seccomp_path}"',
        f'echo "{seccomp_profile_sha256(profile)}  $root{seccomp_path}" | sha256sum -c -',
    ]
    if names.apparmor is not None:
        assert names.apparmor_abi is not None
        apparmor_path = f"{APPARMOR_DIR}/{names.apparmor}"
        lines += [
            f'mkdir -p "$root{APPARMOR_DIR}"',
            f"cat > \"$root{apparmor_path}\" <<'GBR_APPARMOR_EOF'",
            apparmor_profile_text(names.apparmor, names.apparmor_abi).rstrip("\n"),
            "GBR_APPARMOR_EOF",
            f'if [ -z "$root" ]; then apparmor_parser --replace --write-cache "{apparmor_path}"; fi',
        ]
    return "\n".join(lines) + "\n"


def confined_profiles_output(names: ProfileNames) -> dict[str, Any]:
    """The stack output `confinedProfiles`: the names, where the node holds them, and the bootstrap script."""
    return {
        "seccomp": {"localhostProfile": names.seccomp, "nodePath": seccomp_node_path(names), "sha256": seccomp_profile_sha256()},
        "appArmor": None if names.apparmor is None else {"localhostProfile": names.apparmor, "abi": names.apparmor_abi},
        "nodeBootstrap": node_bootstrap_script(names),
    }
