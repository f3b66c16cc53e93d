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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pod_security_controls import APPARMOR_ANNOTATION_PREFIX

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
    with the acknowledged unconfined mode; None means any namespace.
    """

    name: str
    container: str
    images: ImageClass
    relaxation: str
    namespaces_from: str | None = None


ROOTLESS_BUILDKIT = ImageClass("rootless BuildKit", "moby/buildkit", "rootless")
RUNNER_EXCEPTIONS: tuple[RunnerException, ...] = (
    # rootlesskit calls setuid newuidmap/newgidmap: no_new_privs breaks it (moby/buildkit#1671).
    RunnerException("buildkit-escalation", "build", ROOTLESS_BUILDKIT, "allow_privilege_escalation"),
    # newuidmap needs SETUID/SETGID in the bounding set.
    RunnerException("buildkit-keep-setid-caps", "build", ROOTLESS_BUILDKIT, "no_drop_all"),
    # Upstream examples run unconfined so unshare(2)/mount(2) work; only in the acknowledged mode.
    RunnerException("buildkit-unconfined", "build", ROOTLESS_BUILDKIT, "unconfined_profiles", "acknowledged-unconfined"),
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
) -> RunnerException | None:
    mirrors = list(trusted_mirrors)
    for exc in RUNNER_EXCEPTIONS:
        if exc.relaxation != relaxation or exc.container != container:
            continue
        if not all(exc.images.admits(image, mirrors) for image in images):
            continue
        if exc.namespaces_from == "acknowledged-unconfined" and namespace not in set(unconfined_namespaces):
            continue
        return exc
    return None


def parse_runner_config(text: str) -> dict[str, Any]:
    return tomllib.loads(text)


def _kube_sections(config: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    return [(f"runners[{i}]", r.get("kubernetes") or {}) for i, r in enumerate(config.get("runners") or [])]


def runner_config_problems(
    config: Mapping[str, Any], unconfined_namespaces: Iterable[str] = (), trusted_mirrors: Iterable[str] = ()
) -> dict[str, list[str]]:
    """{policy name: messages} for a parsed config.toml. `trusted_mirrors`: registries (policy config
    `trustedBuildkitMirrors`) whose moby/buildkit images count as rootless BuildKit, besides Docker Hub."""
    problems: dict[str, list[str]] = {}
    trusted_mirrors = [str(m) for m in trusted_mirrors]

    def add(policy: str, message: str) -> None:
        problems.setdefault(policy, []).append(message)

    for where, kube in _kube_sections(config):
        image = str(kube.get("image", ""))
        images = job_images(kube)
        namespace = str(kube.get("namespace", ""))

        def allowed(relaxation: str, container: str) -> bool:
            return exception_for(relaxation, container, images, namespace, unconfined_namespaces, trusted_mirrors) is not None

        if kube.get("privileged") is True:
            add("gitlab-runner-privileged", f"{where}.kubernetes.privileged = true")
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
        for key in UNSAFE_OVERWRITES:
            if kube.get(key):
                add("gitlab-runner-overwrites", f"{where}.kubernetes.{key} = {kube[key]!r} lets a job relax its pod")
        volumes = kube.get("volumes") or {}
        if volumes.get("host_path"):
            names = [v.get("name") for v in volumes["host_path"]]
            add("gitlab-runner-host-volumes", f"{where}.kubernetes.volumes.host_path {names}")
        if kube.get("pod_security_context", {}).get("run_as_user") == 0:
            add("gitlab-runner-privileged", f"{where}.kubernetes.pod_security_context.run_as_user = 0")
        for container, profile in unconfined_profiles(kube):
            if not allowed("unconfined_profiles", container):
                add(
                    "gitlab-runner-unconfined-profiles",
                    f"{where}: {profile} on container {container!r} in namespace {namespace!r} without the acknowledged unconfined job security mode",
                )
    return problems


def unconfined_profiles(kube: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(container, what) for every Unconfined AppArmor/seccomp setting the runner would apply."""
    found = []
    for key, value in (kube.get("pod_annotations") or {}).items():
        if key.startswith(APPARMOR_ANNOTATION_PREFIX) and value not in ("runtime/default",) and not str(value).startswith("localhost/"):
            found.append((key.removeprefix(APPARMOR_ANNOTATION_PREFIX), f"AppArmor annotation {value!r}"))
    for patch in kube.get("pod_spec") or []:
        text = str(patch.get("patch", ""))
        try:
            document = json.loads(text)
        except json.JSONDecodeError:
            document = None
        if isinstance(document, dict):
            if _seccomp_type(document.get("securityContext")) == "Unconfined":
                found.append(("*", f"pod_spec patch {patch.get('name')!r} sets pod seccomp Unconfined"))
            for container in document.get("containers") or []:
                if _seccomp_type(container.get("securityContext")) == "Unconfined":
                    found.append((container.get("name", "?"), f"pod_spec patch {patch.get('name')!r} sets seccomp Unconfined"))
        elif "Unconfined" in text:  # not JSON (YAML or a JSON patch): fail closed on the word
            found.append(("*", f"pod_spec patch {patch.get('name')!r} mentions Unconfined"))
    for key in ("seccomp_profile", "app_armor_profile"):  # native fields from runner 18.11
        for container in ("build", "helper", "service"):
            ctx = kube.get(CONTAINER_CONTEXTS[container]) or {}
            if str(_get_type(ctx.get(key))).lower() == "unconfined":
                found.append((container, f"{key} Unconfined"))
    return found


def _seccomp_type(ctx: Any) -> Any:
    return (ctx or {}).get("seccompProfile", {}).get("type") if isinstance(ctx, dict) else None


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
