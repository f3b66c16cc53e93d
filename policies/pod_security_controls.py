"""Pod Security Standards controls as pure functions over a pod spec (camelCase, as in the manifest).

They work on plain dicts (tests, rendered chart objects) and on the policy SDK's read-only proxies,
which raise UnknownValueError when a value the check reads is unknown at preview; the policy wrappers
turn that into a violation (fail closed).

Ref: https://kubernetes.io/docs/concepts/security/pod-security-standards/
Ref: kubernetes/pod-security-admission policy/check_*.go
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

CONTAINER_FIELDS = ("containers", "initContainers", "ephemeralContainers")
APPARMOR_ANNOTATION_PREFIX = "container.apparmor.security.beta.kubernetes.io/"
# seccomp.security.alpha.kubernetes.io/pod and container.seccomp.security.alpha.kubernetes.io/<name>:
# not read since Kubernetes 1.27, so a Localhost profile named there is never what a pod runs under.
SECCOMP_ANNOTATION_MARKER = "seccomp.security.alpha.kubernetes.io"

# Ref: https://github.com/kubernetes/pod-security-admission/blob/master/policy/check_capabilities_baseline.go
BASELINE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)
# Ref: https://github.com/kubernetes/pod-security-admission/blob/master/policy/check_sysctls.go (v1.29+ set)
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})
RESTRICTED_VOLUME_TYPES = frozenset(
    {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}
)
VOLUME_NON_SOURCE_KEYS = frozenset({"name"})

Pod = Mapping[str, Any]


def _get(mapping: Any, *path: str) -> Any:
    current = mapping
    for key in path:
        if not isinstance(current, Mapping):
            return None
        current = current.get(key)
    return current


def containers(spec: Pod) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(location, container) for containers, initContainers and ephemeralContainers."""
    for field in CONTAINER_FIELDS:
        for index, container in enumerate(spec.get(field) or []):
            yield f"{field}[{index}] {container.get('name', '?')!r}", container


def effective(spec: Pod, container: Mapping[str, Any], *path: str) -> Any:
    """A security setting as Kubernetes applies it: the container's value overrides the pod's."""
    value = _get(container, "securityContext", *path)
    return value if value is not None else _get(spec, "securityContext", *path)


# --- baseline ---------------------------------------------------------------------------------


def check_privileged(spec: Pod, meta: Pod) -> list[str]:
    return [f"{where} is privileged" for where, c in containers(spec) if _get(c, "securityContext", "privileged") is True]


def check_host_namespaces(spec: Pod, meta: Pod) -> list[str]:
    return [f"spec.{field} is true" for field in ("hostNetwork", "hostPID", "hostIPC") if spec.get(field) is True]


def check_host_path(spec: Pod, meta: Pod) -> list[str]:
    return [f"volume {v.get('name')!r} is a hostPath" for v in spec.get("volumes") or [] if v.get("hostPath") is not None]


def check_host_ports(spec: Pod, meta: Pod) -> list[str]:
    return [
        f"{where} uses hostPort {p.get('hostPort')}"
        for where, c in containers(spec)
        for p in c.get("ports") or []
        if p.get("hostPort") not in (None, 0)
    ]


def check_capabilities_baseline(spec: Pod, meta: Pod) -> list[str]:
    found = []
    for where, c in containers(spec):
        extra = sorted(set(_get(c, "securityContext", "capabilities", "add") or []) - BASELINE_CAPABILITIES)
        if extra:
            found.append(f"{where} adds capabilities {extra} outside the baseline set")
    return found


def check_proc_mount(spec: Pod, meta: Pod) -> list[str]:
    return [
        f"{where} sets procMount {pm!r}"
        for where, c in containers(spec)
        if (pm := _get(c, "securityContext", "procMount")) not in (None, "Default")
    ]


def check_selinux(spec: Pod, meta: Pod) -> list[str]:
    found = []
    contexts = [("pod", _get(spec, "securityContext", "seLinuxOptions"))]
    contexts += [(where, _get(c, "securityContext", "seLinuxOptions")) for where, c in containers(spec)]
    for where, options in contexts:
        if not options:
            continue
        if options.get("type") not in (None, *SELINUX_TYPES):
            found.append(f"{where} seLinuxOptions.type {options.get('type')!r} is not allowed")
        for field in ("user", "role"):
            if options.get(field):
                found.append(f"{where} sets seLinuxOptions.{field}")
    return found


def check_apparmor(spec: Pod, meta: Pod) -> list[str]:
    found = []
    for key, value in (meta.get("annotations") or {}).items():
        if key.startswith(APPARMOR_ANNOTATION_PREFIX) and not (value == "runtime/default" or str(value).startswith("localhost/")):
            found.append(f"annotation {key}={value!r} is not runtime/default or localhost/*")
    contexts = [("pod", _get(spec, "securityContext", "appArmorProfile", "type"))]
    contexts += [(where, _get(c, "securityContext", "appArmorProfile", "type")) for where, c in containers(spec)]
    found += [f"{where} appArmorProfile.type is {t!r}" for where, t in contexts if t not in (None, "RuntimeDefault", "Localhost")]
    return found


@dataclass(frozen=True)
class LocalhostProfile:
    """A Localhost seccomp/AppArmor profile a pod names: `group` is 'pod' (the pod's securityContext,
    which applies to every container), 'annotation' (AppArmor's beta annotation), 'seccomp-annotation'
    (the alpha annotations Kubernetes no longer reads) or the container list."""

    group: str
    container: str
    kind: Literal["seccomp", "apparmor"]
    profile: str

    def describe(self) -> str:
        where = "the pod's securityContext" if self.group == "pod" else f"{self.group} {self.container!r}"
        return f"Localhost {self.kind} profile {self.profile!r} in {where}"


_PROFILE_FIELDS: tuple[tuple[str, Literal["seccomp", "apparmor"]], ...] = (("seccompProfile", "seccomp"), ("appArmorProfile", "apparmor"))


def localhost_profiles(spec: Pod, meta: Pod) -> list[LocalhostProfile]:
    """Every Localhost profile of a pod, wherever Kubernetes reads one (fields at pod and container level,
    AppArmor annotations), plus the old seccomp annotations naming one."""
    found = []
    for field, kind in _PROFILE_FIELDS:
        contexts = [("pod", "*", _get(spec, "securityContext", field))]
        for group in CONTAINER_FIELDS:
            contexts += [(group, str(c.get("name", "?")), _get(c, "securityContext", field)) for c in spec.get(group) or []]
        for group, name, profile in contexts:
            if isinstance(profile, Mapping) and (profile.get("type") == "Localhost" or profile.get("localhostProfile") is not None):
                found.append(LocalhostProfile(group, name, kind, str(profile.get("localhostProfile"))))
    for key, value in (meta.get("annotations") or {}).items():
        text = str(value)
        if key.startswith(APPARMOR_ANNOTATION_PREFIX) and text.startswith("localhost/"):
            found.append(
                LocalhostProfile("annotation", key.removeprefix(APPARMOR_ANNOTATION_PREFIX), "apparmor", text.removeprefix("localhost/"))
            )
        if SECCOMP_ANNOTATION_MARKER in key and text.startswith("localhost/"):
            found.append(LocalhostProfile("seccomp-annotation", key, "seccomp", text.removeprefix("localhost/")))
    return found


def check_seccomp_baseline(spec: Pod, meta: Pod) -> list[str]:
    contexts = [("pod", _get(spec, "securityContext", "seccompProfile", "type"))]
    contexts += [(where, _get(c, "securityContext", "seccompProfile", "type")) for where, c in containers(spec)]
    return [f"{where} seccompProfile.type is Unconfined" for where, t in contexts if t == "Unconfined"]


def check_sysctls(spec: Pod, meta: Pod) -> list[str]:
    return [
        f"sysctl {s.get('name')!r} is not in the safe set"
        for s in _get(spec, "securityContext", "sysctls") or []
        if s.get("name") not in SAFE_SYSCTLS
    ]


def check_windows_host_process(spec: Pod, meta: Pod) -> list[str]:
    found = []
    if _get(spec, "securityContext", "windowsOptions", "hostProcess") is True:
        found.append("pod windowsOptions.hostProcess is true")
    found += [
        f"{where} windowsOptions.hostProcess is true"
        for where, c in containers(spec)
        if _get(c, "securityContext", "windowsOptions", "hostProcess") is True
    ]
    return found


# --- restricted -------------------------------------------------------------------------------


def check_volume_types(spec: Pod, meta: Pod) -> list[str]:
    found = []
    for volume in spec.get("volumes") or []:
        sources = [k for k in volume if k not in VOLUME_NON_SOURCE_KEYS]
        bad = [s for s in sources if s not in RESTRICTED_VOLUME_TYPES]
        if bad:
            found.append(f"volume {volume.get('name')!r} uses {bad}, outside the restricted volume types")
    return found


def check_privilege_escalation(spec: Pod, meta: Pod) -> list[str]:
    return [
        f"{where} does not set allowPrivilegeEscalation: false"
        for where, c in containers(spec)
        if _get(c, "securityContext", "allowPrivilegeEscalation") is not False
    ]


def check_run_as_non_root(spec: Pod, meta: Pod) -> list[str]:
    found = []
    for where, c in containers(spec):
        if _get(c, "securityContext", "runAsNonRoot") is False:
            found.append(f"{where} sets runAsNonRoot: false")
        elif effective(spec, c, "runAsNonRoot") is not True:
            found.append(f"{where} does not run with runAsNonRoot: true (container or pod)")
    return found


def check_run_as_user(spec: Pod, meta: Pod) -> list[str]:
    found = ["pod runAsUser is 0"] if _get(spec, "securityContext", "runAsUser") == 0 else []
    return found + [f"{where} runAsUser is 0" for where, c in containers(spec) if _get(c, "securityContext", "runAsUser") == 0]


def check_seccomp_restricted(spec: Pod, meta: Pod) -> list[str]:
    return [
        f"{where} has no RuntimeDefault/Localhost seccompProfile (container or pod)"
        for where, c in containers(spec)
        if effective(spec, c, "seccompProfile", "type") not in ("RuntimeDefault", "Localhost")
    ]


def check_capabilities_restricted(spec: Pod, meta: Pod) -> list[str]:
    found = []
    for where, c in containers(spec):
        caps = _get(c, "securityContext", "capabilities") or {}
        if "ALL" not in list(caps.get("drop") or []):
            found.append(f"{where} does not drop ALL capabilities")
        extra = sorted(set(caps.get("add") or []) - {"NET_BIND_SERVICE"})
        if extra:
            found.append(f"{where} adds {extra}; restricted allows only NET_BIND_SERVICE")
    return found


Level = Literal["baseline", "restricted"]


@dataclass(frozen=True)
class Control:
    name: str  # policy name
    level: Level
    description: str
    remediation: str
    check: Callable[[Pod, Pod], list[str]]


CONTROLS: tuple[Control, ...] = (
    Control(
        "kubernetes-pod-privileged",
        "baseline",
        "Containers must not run privileged.",
        "Remove securityContext.privileged.",
        check_privileged,
    ),
    Control(
        "kubernetes-pod-host-namespaces",
        "baseline",
        "Pods must not share the node's network, PID or IPC namespace.",
        "Remove hostNetwork/hostPID/hostIPC.",
        check_host_namespaces,
    ),
    Control(
        "kubernetes-pod-host-path",
        "baseline",
        "Pods must not mount hostPath volumes.",
        "Use emptyDir, a PVC or a projected volume.",
        check_host_path,
    ),
    Control(
        "kubernetes-pod-host-ports",
        "baseline",
        "Containers must not bind host ports.",
        "Remove ports[].hostPort; expose through a Service.",
        check_host_ports,
    ),
    Control(
        "kubernetes-pod-capabilities-baseline",
        "baseline",
        "Containers may only add capabilities from the baseline set.",
        "Remove capabilities.add entries outside the baseline list.",
        check_capabilities_baseline,
    ),
    Control(
        "kubernetes-pod-proc-mount",
        "baseline",
        "Containers must use the default /proc mount.",
        "Remove securityContext.procMount.",
        check_proc_mount,
    ),
    Control(
        "kubernetes-pod-selinux",
        "baseline",
        "SELinux options must not set custom users/roles or unsafe types.",
        "Remove seLinuxOptions.user/role or use a container_* type.",
        check_selinux,
    ),
    Control(
        "kubernetes-pod-apparmor",
        "baseline",
        "AppArmor must not be Unconfined (field or annotation).",
        "Use RuntimeDefault or a Localhost profile.",
        check_apparmor,
    ),
    Control(
        "kubernetes-pod-seccomp-baseline",
        "baseline",
        "seccomp must not be Unconfined.",
        "Use RuntimeDefault or a Localhost profile.",
        check_seccomp_baseline,
    ),
    Control(
        "kubernetes-pod-sysctls",
        "baseline",
        "Only the safe sysctl set may be set.",
        "Remove unsafe securityContext.sysctls.",
        check_sysctls,
    ),
    Control(
        "kubernetes-pod-windows-host-process",
        "baseline",
        "Windows HostProcess containers are not allowed.",
        "Remove windowsOptions.hostProcess.",
        check_windows_host_process,
    ),
    Control(
        "kubernetes-pod-volume-types",
        "restricted",
        "Only restricted volume types may be used.",
        "Use configMap, csi, downwardAPI, emptyDir, ephemeral, PVC, projected or secret volumes.",
        check_volume_types,
    ),
    Control(
        "kubernetes-pod-privilege-escalation",
        "restricted",
        "Containers must set allowPrivilegeEscalation: false.",
        "Set securityContext.allowPrivilegeEscalation: false.",
        check_privilege_escalation,
    ),
    Control(
        "kubernetes-pod-run-as-non-root",
        "restricted",
        "Containers must run with runAsNonRoot: true.",
        "Set runAsNonRoot: true on the pod or container.",
        check_run_as_non_root,
    ),
    Control(
        "kubernetes-pod-run-as-user",
        "restricted",
        "Containers must not run as UID 0.",
        "Set runAsUser to a non-zero UID.",
        check_run_as_user,
    ),
    Control(
        "kubernetes-pod-seccomp-restricted",
        "restricted",
        "A RuntimeDefault or Localhost seccomp profile is required.",
        "Set seccompProfile.type: RuntimeDefault on the pod.",
        check_seccomp_restricted,
    ),
    Control(
        "kubernetes-pod-capabilities-restricted",
        "restricted",
        "Containers must drop ALL and add at most NET_BIND_SERVICE.",
        "Set capabilities.drop: [ALL].",
        check_capabilities_restricted,
    ),
)


def violations(spec: Pod, meta: Pod, level: Level = "restricted") -> dict[str, list[str]]:
    """Every failing control up to `level` (restricted includes baseline), {policy name: messages}."""
    wanted = ("baseline",) if level == "baseline" else ("baseline", "restricted")
    result = {}
    for control in CONTROLS:
        if control.level in wanted:
            found = control.check(spec, meta)
            if found:
                result[control.name] = found
    return result
