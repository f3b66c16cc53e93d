"""The build job inside a container made the way containerd makes a pod's build container, so that a
seccomp profile is applied as a node applies it: runc (Debian's), an OCI spec with the job user
(UID 1000), containerd's default capabilities minus NET_RAW (the stack's build container drops it),
`noNewPrivileges` false (allowPrivilegeEscalation: true, which newuidmap needs), containerd's masked
and read-only /proc paths, its own PID, IPC, UTS and mount namespaces, and the seccomp profile under
test. The host network is shared so the job reaches the ECR stand-in on 127.0.0.1 (a pod has its own
network namespace; nothing measured here depends on it).

RuntimeDefault is generated, not copied: `seccompgen` (e2e/seccompgen, built against containerd
v2.1.4, pinned in e2e/tools.toml) prints containerd's DefaultProfile for that capability set and this
machine's kernel.

Ref: https://github.com/containerd/containerd/blob/v2.1.4/pkg/oci/spec.go (defaultUnixCaps, masked and read-only paths)
Ref: https://github.com/containerd/containerd/blob/v2.1.4/contrib/seccomp/seccomp_default.go (DefaultProfile)
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from .tools import ensure

# containerd's defaultUnixCaps without CAP_NET_RAW (the stack's build container: capabilities.drop NET_RAW).
BUILD_CAPABILITIES = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_SETGID", "CAP_SETUID",
    "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
]  # fmt: skip
MASKED_PATHS = [
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
    "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/sys/devices/virtual/powercap", "/proc/scsi",
]  # fmt: skip
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]


def runtime_default() -> dict[str, Any]:
    """containerd's RuntimeDefault profile for the build container's capabilities, on this kernel."""
    binary = ensure(["seccompgen"])["seccompgen"].binary("seccompgen")
    result = subprocess.run([str(binary), ",".join(BUILD_CAPABILITIES)], capture_output=True, text=True, check=True, timeout=60)
    return dict(json.loads(result.stdout))


def _rootfs(workdir: Path) -> Path:
    """A root whose /usr and /etc are the host's (read-only), like an image with the job's tools."""
    root = workdir / "rootfs"
    if not root.exists():
        root.mkdir(parents=True)
        for name in ("usr", "etc", "tmp", "proc", "dev", "sys", "run"):
            (root / name).mkdir()
        for name, target in (("bin", "usr/bin"), ("sbin", "usr/sbin"), ("lib", "usr/lib"), ("lib64", "usr/lib64")):
            (root / name).symlink_to(target)
    return root


def bundle(
    workdir: Path, *, name: str, args: list[str], env: dict[str, str], cwd: Path, uid: int, gid: int, seccomp: dict[str, Any] | None
) -> Path:
    """Write an OCI bundle (config.json) for one job; `seccomp=None` runs Unconfined."""
    folder = workdir / "bundles" / name
    folder.mkdir(parents=True)
    config: dict[str, Any] = {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": uid, "gid": gid, "additionalGids": [gid]},
            "args": args,
            "env": [f"{k}={v}" for k, v in env.items()],
            "cwd": str(cwd),
            "capabilities": {k: BUILD_CAPABILITIES for k in ("bounding", "effective", "permitted")},
            "noNewPrivileges": False,
        },
        "root": {"path": str(_rootfs(workdir)), "readonly": False},
        "hostname": "build",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            # CRI mounts the container's cgroup read-only; BuildKit's own runc needs to find a cgroup mount.
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
            {"destination": "/usr", "type": "bind", "source": "/usr", "options": ["rbind", "ro"]},
            {"destination": "/etc", "type": "bind", "source": "/etc", "options": ["rbind", "ro"]},
            {"destination": "/tmp", "type": "bind", "source": "/tmp", "options": ["rbind", "rw"]},
            {"destination": "/run", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=755"]},
        ],
        "linux": {
            "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
            "maskedPaths": MASKED_PATHS,
            "readonlyPaths": READONLY_PATHS,
        },
    }  # fmt: skip
    if seccomp is not None:
        config["linux"]["seccomp"] = seccomp
    (folder / "config.json").write_text(json.dumps(config, indent=1))
    return folder


def runc_command(workdir: Path, bundle_dir: Path, name: str) -> list[str]:
    """`runc run` in the foreground; its state under the session folder, so nothing outlives the session."""
    return ["runc", "--root", str(workdir / "runc-state"), "run", "--bundle", str(bundle_dir), name]
