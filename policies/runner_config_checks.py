"""Checks of the gitlab-runner chart's `runners.config` (config.toml) and manager security context.

Pulumi never sees job pods (the runner creates them at run time); what it can check is this TOML.
The only relaxations are the documented needs of rootless BuildKit, listed as data in
RUNNER_EXCEPTIONS: which container, which image, which namespaces, which relaxation.

Ref: https://github.com/moby/buildkit/blob/v0.25.1/docs/rootless.md (what rootless BuildKit needs)
Ref: https://docs.gitlab.com/runner/executors/kubernetes/ (config.toml keys)
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from marks import JOB_PRIORITY_CLASS_PREFIX
from pod_security_controls import APPARMOR_ANNOTATION_PREFIX, LocalhostProfile, localhost_profiles, violations
from pod_spec_patches import PatchError, job_pod, patched_job_pod

CONTAINER_CONTEXTS = {
    "build": "build_container_security_context",
    "helper": "helper_container_security_context",
    "service": "service_container_security_context",
}
# Overwrites a job could use to relax security or escape its namespace. The *_max_allowed resource
# overwrites are not in this list: they only let a job ask for more CPU/memory up to a cap.
UNSAFE_OVERWRITES = (
    "namespace_overwrite_allowed",
    "service_account_overwrite_allowed",
    "bearer_token_overwrite_allowed",
    "pod_annotations_overwrite_allowed",
    "pod_labels_overwrite_allowed",
    "node_selector_overwrite_allowed",
    "node_tolerations_overwrite_allowed",
    "helper_image_overwrite_allowed",
)


@dataclass(frozen=True)
class ImageClass:
    """The images an exception holds for: `repository` from Docker Hub (bare or `docker.io/`) or from a
    mirror the policy config trusts, with `tag_marker` in the tag.

    Read as the runner reads `allowed_images` (doublestar patterns): a pattern is admitted only when
    every image it can match is in the class, so no wildcard may stand before the tag ('*/moby/buildkit'
    would match 'evil.example/moby/buildkit'), and alternation or character classes are refused.
    """

    name: str
    repository: str
    tag_marker: str

    def admits(self, image_or_pattern: str, trusted_mirrors: Iterable[str] = ()) -> bool:
        prefix, sep, tag = image_or_pattern.partition(f"{self.repository}:")
        if not sep or not _TAG_PATTERN.fullmatch(tag) or self.tag_marker not in tag or "**" in tag:
            return False
        registry = prefix.removesuffix("/")
        if prefix and not prefix.endswith("/"):
            return False  # e.g. 'evilmoby/buildkit:...'
        return registry in DOCKER_HUB or registry in set(trusted_mirrors)


_TAG_PATTERN = re.compile(r"[A-Za-z0-9_.*-]+")
DOCKER_HUB = ("", "docker.io")


@dataclass(frozen=True)
class RunnerException:
    """One allowed relaxation: `relaxation` on `container` when every image a job can run is in `images`.

    `namespaces_from` = "acknowledged-unconfined" limits it to job namespaces the stack labelled
    with the acknowledged unconfined mode, "confined" to those marked for the confined mode; None
    means any namespace.
    """

    name: str
    container: str
    images: ImageClass
    relaxation: str
    namespaces_from: str | None = None


@dataclass(frozen=True)
class ConfinedNamespace:
    """A job namespace the stack marked for the 'confined' mode, with the exact Localhost profiles it names."""

    seccomp: str
    apparmor: str | None = None


ROOTLESS_BUILDKIT = ImageClass("rootless BuildKit", "moby/buildkit", "rootless")
RUNNER_EXCEPTIONS: tuple[RunnerException, ...] = (
    # rootlesskit calls setuid newuidmap/newgidmap: no_new_privs breaks it (moby/buildkit#1671).
    RunnerException("buildkit-escalation", "build", ROOTLESS_BUILDKIT, "allow_privilege_escalation"),
    # newuidmap needs SETUID/SETGID in the bounding set.
    RunnerException("buildkit-keep-setid-caps", "build", ROOTLESS_BUILDKIT, "no_drop_all"),
    # Upstream examples run unconfined so unshare(2)/mount(2) work; only in the acknowledged mode.
    RunnerException("buildkit-unconfined", "build", ROOTLESS_BUILDKIT, "unconfined_profiles", "acknowledged-unconfined"),
    # The stack's Localhost profiles (RuntimeDefault plus what rootlesskit needs); the names are checked
    # against the namespace's marks separately (localhost_profile_problems).
    RunnerException("buildkit-localhost-profiles", "build", ROOTLESS_BUILDKIT, "localhost_profiles", "confined"),
)


def job_images(kube: Mapping[str, Any]) -> list[str]:
    """Every image a job on this runner can run: the default plus `allowed_images` (no list = any image).

    The build container's security context applies to whatever image a job picks, so an exception
    holds only when all of them are covered. An allowed pattern must itself fit the exception's image
    class ('moby/buildkit:*rootless*' does; '*', '**', 'moby/buildkit:*' or '*/moby/buildkit:*rootless*' do not).
    """
    allowed = list(kube.get("allowed_images") or ["**"])
    return [str(kube.get("image", "")), *map(str, allowed)]


def exception_for(
    relaxation: str,
    container: str,
    images: Iterable[str],
    namespace: str,
    unconfined_namespaces: Iterable[str],
    trusted_mirrors: Iterable[str] = (),
    confined_namespaces: Iterable[str] = (),
) -> RunnerException | None:
    mirrors = list(trusted_mirrors)
    for exc in RUNNER_EXCEPTIONS:
        if exc.relaxation != relaxation or exc.container != container:
            continue
        if not all(exc.images.admits(image, mirrors) for image in images):
            continue
        if exc.namespaces_from == "acknowledged-unconfined" and namespace not in set(unconfined_namespaces):
            continue
        if exc.namespaces_from == "confined" and namespace not in set(confined_namespaces):
            continue
        return exc
    return None


TEMPLATE_ESCAPE = '{{ "{{" }}'  # the stack's only template action: it prints "{{"


class RunnerConfigError(ValueError):
    """runners.config cannot be read the way the chart and the runner read it."""


# --- Reading config.toml as gitlab-runner does ----------------------------------------------------
# The chart renders runners.config through Helm `tpl`, so any template action other than the stack's
# own escape could inject lines the pack never sees. The runner decodes TOML with BurntSushi/toml,
# which matches table and key names to its struct fields case-insensitively (Go's EqualFold: the
# Kelvin sign and long s fold too), while map values (annotations, node selector, feature flags) keep
# their keys. So keys are folded along a schema, a key that folds onto another is ambiguous, and a
# key outside the schema cannot be judged.
# Ref: https://gitlab.com/gitlab-org/charts/gitlab-runner/-/blob/v0.86.0/templates/configmap.yaml
# Ref: https://github.com/BurntSushi/toml/blob/master/decode.go (case-insensitive field matching)

ANY = "any"  # a value whose inner keys are data (maps) or judged elsewhere as a whole
_CONTEXT: dict[str, Any] = {
    **dict.fromkeys(
        (
            "privileged",
            "allow_privilege_escalation",
            "run_as_non_root",
            "run_as_user",
            "run_as_group",
            "read_only_root_filesystem",
            "proc_mount",
            "seccomp_profile",
            "app_armor_profile",
        ),
        ANY,
    ),
    "capabilities": {"add": ANY, "drop": ANY},
}
_RESOURCES = [
    f"{prefix}{kind}_{what}"
    for prefix in ("", "helper_", "service_")
    for kind in ("cpu", "memory", "ephemeral_storage")
    for what in ("request", "limit")
]


@dataclass(frozen=True)
class ListOf:
    item: Any


SCHEMA: dict[str, Any] = {
    "runners": ListOf(
        {
            **dict.fromkeys(("name", "executor", "environment"), ANY),
            "feature_flags": ANY,
            "kubernetes": {
                **dict.fromkeys(
                    (
                        "namespace",
                        "image",
                        "allowed_images",
                        "allowed_services",
                        "helper_image",
                        "privileged",
                        "allow_privilege_escalation",
                        "service_account",
                        "automount_service_account_token",
                        "poll_timeout",
                        "poll_interval",
                        "cpu_limit_overwrite_max_allowed",
                        "memory_limit_overwrite_max_allowed",
                        "cpu_request_overwrite_max_allowed",
                        "memory_request_overwrite_max_allowed",
                        "node_selector",
                        "priority_class_name",  # only the stack's class (checked below)
                        "pod_annotations",
                        "pod_labels",
                        "cap_add",
                        "cap_drop",
                        *_RESOURCES,
                        *UNSAFE_OVERWRITES,
                    ),
                    ANY,
                ),
                "pod_security_context": dict.fromkeys(
                    ("fs_group", "run_as_user", "run_as_group", "run_as_non_root", "supplemental_groups"), ANY
                ),
                **{key: _CONTEXT for key in (*CONTAINER_CONTEXTS.values(), "init_permissions_container_security_context")},
                "volumes": {
                    "empty_dir": ListOf(dict.fromkeys(("name", "mount_path", "medium", "size_limit"), ANY)),
                    "host_path": ANY,  # judged whole by gitlab-runner-host-volumes
                },
                "pod_spec": ListOf(dict.fromkeys(("name", "patch_type", "patch"), ANY)),
            },
        }
    )
}


@dataclass
class RunnerConfig:
    """config.toml as the runner reads it: keys folded, plus what the schema does not cover."""

    data: dict[str, Any]
    unknown: list[str]


def _fold(value: Any, schema: Any, path: str, unknown: list[str]) -> Any:
    if schema is ANY:
        return value
    if isinstance(schema, ListOf):
        if not isinstance(value, list):
            raise RunnerConfigError(f"{path} must be an array of tables")
        return [_fold(item, schema.item, f"{path}[{i}]", unknown) for i, item in enumerate(value)]
    if not isinstance(value, dict):
        raise RunnerConfigError(f"{path or 'the document'} must be a table")
    folded: dict[str, Any] = {}
    originals: dict[str, str] = {}
    for key, item in value.items():
        name = str(key).casefold()
        where = f"{path}.{key}" if path else str(key)
        if name in folded:
            raise RunnerConfigError(f"{where} and {originals[name]!r} are the same key to the runner (keys match case-insensitively)")
        originals[name] = str(key)
        if name in schema:
            folded[name] = _fold(item, schema[name], where, unknown)
        else:
            folded[name] = item
            unknown.append(where)
    return folded


def parse_runner_config(text: str) -> RunnerConfig:
    """Read runners.config as the chart renders it and the runner decodes it; raises RunnerConfigError."""
    rest = text.replace(TEMPLATE_ESCAPE, "")
    if "{{" in rest:
        raise RunnerConfigError(
            "it holds a Helm template action (the chart renders runners.config with tpl); only the escape "
            f"{TEMPLATE_ESCAPE} that prints '{{{{' is allowed"
        )
    try:
        document = tomllib.loads(text.replace(TEMPLATE_ESCAPE, "{{"))
    except tomllib.TOMLDecodeError as exc:
        raise RunnerConfigError(f"not valid TOML: {exc}") from None
    unknown: list[str] = []
    return RunnerConfig(_fold(document, SCHEMA, "", unknown), unknown)


def _kube_sections(config: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    return [(f"runners[{i}]", r.get("kubernetes") or {}) for i, r in enumerate(config.get("runners") or [])]


def runner_config_problems(
    config: RunnerConfig | Mapping[str, Any],
    unconfined_namespaces: Iterable[str] = (),
    trusted_mirrors: Iterable[str] = (),
    confined_namespaces: Mapping[str, ConfinedNamespace] | None = None,
) -> dict[str, list[str]]:
    """{policy name: messages} for a config.toml read by parse_runner_config. `trusted_mirrors`: registries
    (policy config `trustedBuildkitMirrors`) whose moby/buildkit images count as rootless BuildKit;
    `confined_namespaces`: the job namespaces marked for the confined mode, with their profile names."""
    confined = dict(confined_namespaces or {})
    problems: dict[str, list[str]] = {}
    trusted_mirrors = [str(m) for m in trusted_mirrors]
    data = config.data if isinstance(config, RunnerConfig) else config

    def add(policy: str, message: str) -> None:
        problems.setdefault(policy, []).append(message)

    if isinstance(config, RunnerConfig):
        for where in config.unknown:
            add("gitlab-runner-config-understood", f"{where} is not a setting the pack models, so it cannot be judged")

    for where, kube in _kube_sections(data):
        image = str(kube.get("image", ""))
        images = job_images(kube)
        namespace = str(kube.get("namespace", ""))

        def allowed(relaxation: str, container: str) -> bool:
            return exception_for(relaxation, container, images, namespace, unconfined_namespaces, trusted_mirrors, confined) is not None

        if kube.get("privileged") is not False and kube.get("privileged") is not None:
            add("gitlab-runner-privileged", f"{where}.kubernetes.privileged = {json.dumps(kube.get('privileged'))}")
        if kube.get("allow_privilege_escalation") is True:
            add("gitlab-runner-privilege-escalation", f"{where}.kubernetes.allow_privilege_escalation = true applies to every container")
        if kube.get("cap_add"):
            add("gitlab-runner-capabilities", f"{where}.kubernetes.cap_add = {list(kube['cap_add'])}")
        for container, key in CONTAINER_CONTEXTS.items():
            ctx = kube.get(key) or {}
            if ctx.get("privileged") is True:
                add("gitlab-runner-privileged", f"{where}.kubernetes.{key}.privileged = true")
            caps = ctx.get("capabilities") or {}
            if caps.get("add"):
                add("gitlab-runner-capabilities", f"{where}.kubernetes.{key}.capabilities.add = {list(caps['add'])}")
            escalation = ctx.get("allow_privilege_escalation")
            if escalation is not False and not allowed("allow_privilege_escalation", container):
                add(
                    "gitlab-runner-privilege-escalation",
                    f"{where}.kubernetes.{key}.allow_privilege_escalation must be false (is {escalation!r})",
                )
            if container == "build" and "ALL" in list(caps.get("drop") or []) and allowed("no_drop_all", container):
                add(
                    "gitlab-runner-buildkit-needs",
                    f"{where}.kubernetes.{key} drops ALL: rootless BuildKit loses SETUID/SETGID (newuidmap fails)",
                )
            if container == "build" and escalation is False and ROOTLESS_BUILDKIT.admits(image, trusted_mirrors):
                add(
                    "gitlab-runner-buildkit-needs",
                    f"{where}.kubernetes.{key}.allow_privilege_escalation = false breaks rootlesskit (newuidmap: Could not set caps)",
                )
        init = kube.get("init_permissions_container_security_context") or {}
        if init.get("privileged") is True:
            add("gitlab-runner-privileged", f"{where}.kubernetes.init_permissions_container_security_context.privileged = true")
        if (init.get("capabilities") or {}).get("add"):
            add("gitlab-runner-capabilities", f"{where}.kubernetes.init_permissions_container_security_context.capabilities.add")
        for key in UNSAFE_OVERWRITES:
            if kube.get(key):
                add("gitlab-runner-overwrites", f"{where}.kubernetes.{key} = {kube[key]!r} lets a job relax its pod")
        volumes = kube.get("volumes") or {}
        if volumes.get("host_path"):
            names = [v.get("name") for v in volumes["host_path"]]
            add("gitlab-runner-host-volumes", f"{where}.kubernetes.volumes.host_path {names}")
        priority = kube.get("priority_class_name")
        if priority is not None and priority != f"{JOB_PRIORITY_CLASS_PREFIX}{namespace}":
            # system-node-critical and friends would let builds preempt (and outlive) system pods.
            add(
                "gitlab-runner-config-understood",
                f"{where}.kubernetes.priority_class_name = {priority!r}: only the stack's class for the job namespace "
                f"({JOB_PRIORITY_CLASS_PREFIX}{namespace!s}) may be named",
            )
        if (kube.get("pod_security_context") or {}).get("run_as_user") == 0:
            add("gitlab-runner-privileged", f"{where}.kubernetes.pod_security_context.run_as_user = 0")
        try:
            patched_spec, meta = patched_job_pod(kube)
        except PatchError as exc:
            add("gitlab-runner-pod-spec-patches", f"{where}.kubernetes.pod_spec: {exc}")
            continue
        for message in introduced_by_patches(kube, patched_spec, meta):
            add("gitlab-runner-pod-spec-patches", f"{where}.kubernetes.pod_spec: {message}")
        for container, profile in unconfined_profiles(kube, patched_spec):
            if not allowed("unconfined_profiles", container):
                add(
                    "gitlab-runner-unconfined-profiles",
                    f"{where}: {profile} on container {container!r} in namespace {namespace!r} without the acknowledged unconfined job security mode",
                )
        build_allowed = allowed("localhost_profiles", "build")
        for message in localhost_profile_problems(kube, patched_spec, meta, confined.get(namespace) if build_allowed else None):
            add(LOCALHOST_POLICY, f"{where}: {message}")
    return problems


LOCALHOST_POLICY = "gitlab-runner-localhost-profiles"


def localhost_profile_problems(
    kube: Mapping[str, Any], patched_spec: Mapping[str, Any], meta: Mapping[str, Any], marks: ConfinedNamespace | None
) -> list[str]:
    """Why each Localhost profile the job pod would get is not admitted. Admitted: exactly the profile the
    job namespace's marks name, of that kind, on the build container (`containers`, by name), in a
    namespace marked 'confined', when every image a job can run is rootless BuildKit (`marks` is None
    otherwise), with the build container's image left as the runner sets it."""
    namespace = str(kube.get("namespace", ""))
    problems = []
    found = localhost_profiles(patched_spec, meta)
    for container, context_key, key, value in _native_profiles(kube):  # not modelled for Localhost
        if str(_get_type(value)).lower() == "localhost" or (isinstance(value, dict) and value.get("localhost_profile")):
            problems.append(
                f"{context_key}.{key} names a Localhost profile for {container!r}: the pack admits the stack's "
                "profiles only through its pod_spec patch (native profile fields are not modelled)"
            )
    if found and marks is not None:
        builds = [c for c in patched_spec.get("containers") or [] if c.get("name") == "build"]
        if len(builds) != 1 or builds[0].get("image") != kube.get("image"):
            problems.append(
                "the pod_spec patches change, remove or duplicate the build container (its image must stay the runner's), "
                "so its Localhost profiles cannot be admitted"
            )
            marks = None
    for profile in found:
        reason = _localhost_refusal(profile, namespace, marks)
        if reason:
            problems.append(f"{profile.describe()}: {reason}")
    return problems


def _localhost_refusal(profile: LocalhostProfile, namespace: str, marks: ConfinedNamespace | None) -> str | None:
    if profile.group == "seccomp-annotation":
        return "Kubernetes has not read seccomp annotations since 1.27; set the field on the build container"
    if profile.group == "pod":
        return (
            "a pod-level profile applies to every container (helper, init-permissions, services); only the build container may run under it"
        )
    if profile.container != "build" or profile.group not in ("containers", "annotation"):
        return "only the build container (in containers) may run under the stack's Localhost profiles"
    if marks is None:
        return (
            f"namespace {namespace!r} is not a job namespace marked for the 'confined' job security mode, or a job on this "
            "runner can run an image other than rootless BuildKit"
        )
    expected = marks.seccomp if profile.kind == "seccomp" else marks.apparmor
    if expected is None:
        return f"namespace {namespace!r} names no {profile.kind} profile"
    if profile.profile != expected:
        return f"the stack's {profile.kind} profile in namespace {namespace!r} is {expected!r} (names must match exactly)"
    return None


# Controls judged on the patched pod here; seccomp and AppArmor go through the unconfined-profiles
# policy instead, which knows the BuildKit exception.
_PROFILE_CONTROLS = ("kubernetes-pod-seccomp-baseline", "kubernetes-pod-apparmor")


def introduced_by_patches(kube: Mapping[str, Any], patched_spec: Mapping[str, Any], meta: Mapping[str, Any]) -> list[str]:
    """Pod Security baseline violations the pod_spec patches add to the job pod the runner builds."""
    if not kube.get("pod_spec"):
        return []
    before_spec, before_meta = job_pod(kube)
    before = violations(before_spec, before_meta, "baseline")
    after = violations(patched_spec, meta, "baseline")
    return [
        f"{control}: {message}"
        for control, messages in after.items()
        if control not in _PROFILE_CONTROLS
        for message in messages
        if message not in before.get(control, [])
    ]


def unconfined_profiles(kube: Mapping[str, Any], patched_spec: Mapping[str, Any] | None = None) -> list[tuple[str, str]]:
    """(container, what) for every AppArmor/seccomp setting other than RuntimeDefault/Localhost the runner
    would apply: the AppArmor annotations, and the profiles of the pod after its pod_spec patches."""
    found = []
    for key, value in (kube.get("pod_annotations") or {}).items():
        if key.startswith(APPARMOR_ANNOTATION_PREFIX) and value not in ("runtime/default",) and not str(value).startswith("localhost/"):
            found.append((key.removeprefix(APPARMOR_ANNOTATION_PREFIX), f"AppArmor annotation {value!r}"))
    spec = patched_spec if patched_spec is not None else job_pod(kube)[0]
    for field in ("seccompProfile", "appArmorProfile"):
        pod_type = ((spec.get("securityContext") or {}).get(field) or {}).get("type")
        if pod_type not in (None, "RuntimeDefault", "Localhost"):
            found.append(("*", f"pod {field} {pod_type!r}"))
        for group in ("containers", "initContainers", "ephemeralContainers"):
            for container in spec.get(group) or []:
                kind = ((container.get("securityContext") or {}).get(field) or {}).get("type")
                if kind not in (None, "RuntimeDefault", "Localhost"):
                    found.append((str(container.get("name", "?")), f"{field} {kind!r}"))
    for container, _, key, value in _native_profiles(kube):
        if str(_get_type(value)).lower() not in ("none", "runtimedefault", "localhost"):
            found.append((container, f"{key} {_get_type(value)!r}"))
    return found


def _native_profiles(kube: Mapping[str, Any]) -> Iterator[tuple[str, str, str, Any]]:
    """(container, context key, field, value) of the native profile fields (runner 18.11+) of each container context."""
    for key in ("seccomp_profile", "app_armor_profile"):
        for container, context_key in CONTAINER_CONTEXTS.items():
            yield container, context_key, key, (kube.get(context_key) or {}).get(key)


def _get_type(value: Any) -> Any:
    return value.get("type") if isinstance(value, dict) else value


def manager_context_problems(values: Mapping[str, Any]) -> list[str]:
    """The chart's manager pod must be PSA restricted (the chart sets no seccompProfile by default)."""
    problems = []
    container = values.get("securityContext") or {}
    pod = values.get("podSecurityContext") or {}
    if container.get("allowPrivilegeEscalation") is not False:
        problems.append("securityContext.allowPrivilegeEscalation must be false")
    if container.get("privileged") is True:
        problems.append("securityContext.privileged must not be true")
    if "ALL" not in list((container.get("capabilities") or {}).get("drop") or []):
        problems.append("securityContext.capabilities.drop must include ALL")
    if container.get("runAsNonRoot") is not True and pod.get("runAsNonRoot") is not True:
        problems.append("runAsNonRoot must be true (securityContext or podSecurityContext)")
    if 0 in (container.get("runAsUser"), pod.get("runAsUser")):
        problems.append("runAsUser must not be 0")
    seccomp = (container.get("seccompProfile") or pod.get("seccompProfile") or {}).get("type")
    if seccomp not in ("RuntimeDefault", "Localhost"):
        problems.append(f"seccompProfile.type must be RuntimeDefault or Localhost (is {seccomp!r})")
    rbac = values.get("rbac") or {}
    if rbac.get("create") is True and not rbac.get("rules"):
        problems.append("rbac.create with empty rbac.rules grants '*' on all core resources")
    return problems
