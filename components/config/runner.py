"""The GitLab runner: where it is registered, its chart, its job image and the job pods' settings."""

from __future__ import annotations

import fnmatch
import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, model_validator
from pydantic.alias_generators import to_camel

from .base import ConfigModel, RuleViolation
from .confinement import ARCH_LABEL, CONFINED_ARCH, NODE_OS, ConfinedProfiles, NodeOs, ProfileNames
from .fields import IMAGE_TAG, RUNNER_TAG, SEMVER, ByteQuantity, ImageRef, LabelKey, LabelValue, Quantity, matching
from .kubernetes import Resources

JobSecurityMode = Literal["baseline", "confined", "unconfined"]
RunnerType = Literal["project_type", "group_type", "instance_type"]

# An allowed-image pattern for the build container: rootless moby/buildkit from one named registry.
# No wildcard before the tag: the runner matches patterns with doublestar, and '*/moby/buildkit'
# would also admit 'evil.example/moby/buildkit'. Docker Hub is the bare name or 'docker.io/'.
# Ref: https://gitlab.com/gitlab-org/gitlab-runner/-/blob/v18.9.0/common/allowed_images.go
BUILDKIT_IMAGE_PATTERN = re.compile(
    r"(?:(?P<registry>[a-z0-9]+(?:[.-][a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*)/)?"
    r"moby/buildkit:(?P<tag>[A-Za-z0-9_.*-]+)"
)


def _buildkit_pattern(value: str) -> str:
    match = BUILDKIT_IMAGE_PATTERN.fullmatch(value)
    if not match or "rootless" not in match["tag"] or "**" in value:
        raise ValueError(
            "must be a rootless BuildKit image pattern from one named registry, such as 'moby/buildkit:*rootless*', "
            "'docker.io/moby/buildkit:*rootless*' or 'registry.example.com/mirror/moby/buildkit:*rootless*' "
            "(no wildcard before the tag: the build container's relaxed security context applies to whatever image a job picks)"
        )
    return value


BuildkitImagePattern = Annotated[str, AfterValidator(_buildkit_pattern)]

_HOST = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def _chart_repository(value: str) -> str:
    """An https Helm repository URL: a host (and optional port and path), nothing that changes the host.

    'https://charts.gitlab.io@evil.example' is a URL whose host is evil.example (the part before '@'
    is userinfo), so userinfo is refused, as are query strings, fragments and whitespace.
    """
    allowed = "an https:// URL of a Helm repository: a host and optional port/path, such as 'https://charts.gitlab.io'"
    if any(c.isspace() for c in value) or not value.startswith("https://"):
        raise ValueError(f"must be {allowed}")
    parts = urlsplit(value)
    if "@" in parts.netloc:
        raise ValueError(f"must be {allowed}: credentials or '@' before the host would send the chart request to another host")
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.query or parts.fragment or not _HOST.fullmatch(parts.hostname or "") or port == -1 or port == 0:
        raise ValueError(f"must be {allowed}")
    return value


class RunnerScope(ConfigModel):
    type: RunnerType = "project_type"
    """Runner type: project_type, group_type or instance_type."""
    project_id: int | None = Field(None, ge=1)
    """Numeric project id (project_type only)."""
    group_id: int | None = Field(None, ge=1)
    """Numeric group id (group_type only)."""

    @model_validator(mode="after")
    def _ids_match_type(self) -> RunnerScope:
        wanted = {"project_type": "project_id", "group_type": "group_id", "instance_type": None}[self.type]
        for field in ("project_id", "group_id"):
            present = getattr(self, field) is not None
            if field == wanted and not present:
                raise ValueError(f"type {self.type!r} needs {to_camel(field)}")
            if field != wanted and present:
                raise ValueError(f"type {self.type!r} does not take {to_camel(field)}")
        return self


class JobPriority(ConfigModel):
    """The PriorityClass of job pods (one per job namespace, named after it)."""

    value: int = Field(1000, ge=-2147483648, le=1000000000)
    """Priority of job pods: at most 1000000000 (higher values are reserved for system classes); the
    default sits above pods without a class (0) and far below system pods."""
    preemption_policy: Literal["Never", "PreemptLowerPriority"] = "Never"
    """'Never' (default): a pending build waits rather than evicting other pods."""


class RunnerConfig(ConfigModel):
    chart_version: Annotated[str, matching(SEMVER, "an exact chart version such as '0.86.0'")] = "0.86.0"
    """Exact version of the gitlab-runner chart."""
    chart_repository: Annotated[str, AfterValidator(_chart_repository)] = "https://charts.gitlab.io"
    """Helm repository of the chart."""
    manager_image_tag: Annotated[str, matching(IMAGE_TAG, "an image tag such as 'alpine-v18.9.0'")] | None = None
    """gitlab-runner image tag for the manager; unset uses the chart's appVersion."""
    job_image: ImageRef = "moby/buildkit:v0.25.1-rootless"
    """Default job image (rootless BuildKit); prod requires a version tag or digest."""
    allowed_images: list[BuildkitImagePattern] = Field(
        default=["moby/buildkit:*rootless*", "docker.io/moby/buildkit:*rootless*"], min_length=1
    )
    """Images a job may choose (runner allowed_images, doublestar patterns): the build container's
    relaxed security context applies to whatever image a job runs, so only rootless BuildKit, each
    pattern naming its registry (a mirror must also be trusted in the pack's trustedBuildkitMirrors)."""
    allowed_services: list[
        Annotated[str, matching(re.compile(r"[a-z0-9][a-z0-9._/:@*-]*"), "an image pattern such as 'postgres:16*'")]
    ] = []
    """Service images a job may start (runner allowed_services); empty allows none (services get the
    helper's resources and a restricted context)."""
    helper_image: ImageRef | None = None
    """Helper image override; unset uses the runner's default helper."""
    scope: RunnerScope
    """Where the runner is registered (gitlab.UserRunner)."""
    description: str = Field("rootless BuildKit runner", min_length=1, max_length=255)
    """Runner description shown in GitLab (the environment is appended)."""
    tags: list[Annotated[str, matching(RUNNER_TAG, "a runner tag of letters, digits, '_', '.', '-'")]] = ["buildkit"]
    """Runner tags; jobs select the runner with these."""
    run_untagged: bool = False
    """Also pick jobs without tags."""
    protected_only: bool = False
    """Only run jobs on protected branches and tags (access_level ref_protected)."""
    maximum_timeout_seconds: int = Field(3600, ge=600, le=86400)
    """Longest job the runner accepts; also sets the manager's graceful-shutdown period."""
    concurrent: int = Field(10, ge=1, le=500)
    """Maximum concurrent jobs of this runner manager."""
    check_interval_seconds: int = Field(3, ge=1, le=3600)
    """Seconds between job polls."""
    poll_timeout_seconds: int = Field(600, ge=30, le=3600)
    """Seconds the runner waits for a job pod to start."""
    job_security_mode: JobSecurityMode = "baseline"
    """'baseline' (no explicit seccomp/AppArmor; job namespace PSA baseline), 'confined' (the stack's Localhost
    seccomp, and AppArmor on AppArmor nodes, on the build container; PSA baseline; needs nodeOs and the
    profiles on every node) or 'unconfined' (both Unconfined on the build container; PSA privileged)."""
    node_os: NodeOs | None = None
    """Operating system of the nodes that run jobs; required by jobSecurityMode 'confined', and refuses
    modes that cannot build there (README 'Job security modes')."""
    confined_profiles: ConfinedProfiles | None = None
    """Names of the Localhost profiles in jobSecurityMode 'confined' (unset: the stack's defaults)."""
    acknowledge_unconfined: bool = False
    """Must be true to use jobSecurityMode 'unconfined'."""
    # Ephemeral storage: the largest job measured by `make bench-build` peaks at 383 MiB on disk (a small
    # Go service; docs/benchmark.md "Disk per job"); 10Gi/40Gi leave room for real bases and dependency
    # trees. Required (see _builds_have_ephemeral_storage): without it the LimitRange default applies.
    build_resources: Resources = Resources(
        cpu_request="1",
        cpu_limit="4",
        memory_request="2Gi",
        memory_limit="8Gi",
        ephemeral_storage_request="10Gi",
        ephemeral_storage_limit="40Gi",
    )
    """Requests/limits of the build container (also the job namespace LimitRange defaults)."""
    helper_resources: Resources = Resources(
        cpu_request="100m",
        cpu_limit="500m",
        memory_request="128Mi",
        memory_limit="256Mi",
        ephemeral_storage_request="100Mi",
        ephemeral_storage_limit="1Gi",
    )
    """Requests/limits of the helper, init-permissions and service containers (also the job namespace
    LimitRange defaults, so a container nobody configured gets these small values)."""
    manager_resources: Resources = Resources(
        cpu_request="100m",
        cpu_limit="500m",
        memory_request="128Mi",
        memory_limit="512Mi",
        ephemeral_storage_request="100Mi",
        ephemeral_storage_limit="1Gi",
    )
    """Requests/limits of the runner manager pod."""
    buildkit_state_size_limit: ByteQuantity = "30Gi"
    """Size limit of the emptyDir holding BuildKit state."""
    metrics_enabled: bool = True
    """Expose runner metrics on :9252."""
    pod_monitor: bool = False
    """Create a PodMonitor (needs the Prometheus Operator CRDs; the chart skips it otherwise)."""
    # Safe overwrites only: a job may ask for more CPU/memory up to these maxima. The settings that
    # let a job relax security (namespace, service account, bearer token, annotations) are not offered.
    cpu_limit_overwrite_max: Quantity | None = None
    """Let jobs raise their CPU limit up to this (KUBERNETES_CPU_LIMIT); unset forbids it."""
    memory_limit_overwrite_max: ByteQuantity | None = None
    """Let jobs raise their memory limit up to this; unset forbids it."""
    job_priority: JobPriority = JobPriority()
    """PriorityClass of job pods; with the autoscalers' do-not-disrupt annotations on every job pod, a
    node scale-down does not evict a running build."""
    node_selector: dict[LabelKey, LabelValue] = {}
    """Node selector for job pods and the manager (e.g. nodes with user namespaces enabled)."""

    @model_validator(mode="after")
    def _builds_have_ephemeral_storage(self) -> RunnerConfig:
        # Without it the job namespace's LimitRange gives the build container the helper's default
        # (1Gi), and the kubelet evicts any real build; BuildKit's state lives on node disk.
        build = self.build_resources
        for key in ("ephemeral_storage_request", "ephemeral_storage_limit"):
            if getattr(build, key) is None:
                raise RuleViolation(
                    f"buildResources.{to_camel(key)}",
                    None,
                    "is required: without it the job namespace's LimitRange default (the helper's) applies to the build "
                    "container and the kubelet evicts real builds; the default is 10Gi request, 40Gi limit",
                )
        return self

    @model_validator(mode="after")
    def _unconfined_is_acknowledged(self) -> RunnerConfig:
        if self.job_security_mode == "unconfined" and not self.acknowledge_unconfined:
            raise ValueError(
                "jobSecurityMode 'unconfined' labels the job namespace PSA 'privileged' and runs builds "
                "without seccomp/AppArmor; set acknowledgeUnconfined: true to accept that"
            )
        if self.acknowledge_unconfined and self.job_security_mode != "unconfined":
            raise ValueError("acknowledgeUnconfined is only meaningful with jobSecurityMode 'unconfined'")
        return self

    @model_validator(mode="after")
    def _mode_fits_node_os(self) -> RunnerConfig:
        mode = self.job_security_mode
        if self.confined_profiles is not None and mode != "confined":
            raise RuleViolation(
                "confinedProfiles", self.confined_profiles.model_dump(by_alias=True), "is only meaningful with jobSecurityMode 'confined'"
            )
        if mode == "confined" and self.node_os is None:
            raise RuleViolation(
                "nodeOs",
                None,
                f"must be set with jobSecurityMode 'confined' (one of {', '.join(NODE_OS)}): which Localhost profiles "
                "a build needs depends on the node's OS (AppArmor or not)",
            )
        if self.node_os is None:
            return self
        facts = NODE_OS[self.node_os]
        if mode == "confined" and facts.confined:
            raise RuleViolation("nodeOs", self.node_os, f"jobSecurityMode 'confined' is not supported on {self.node_os}: {facts.confined}")
        if mode == "confined" and self.node_selector.get(ARCH_LABEL) != CONFINED_ARCH:
            raise RuleViolation(
                f"nodeSelector.{ARCH_LABEL}",
                self.node_selector.get(ARCH_LABEL),
                f"must be {CONFINED_ARCH!r} with jobSecurityMode 'confined': its seccomp profile is containerd's default "
                f"for {CONFINED_ARCH} plus measured syscalls, generated and tested on {CONFINED_ARCH} only",
            )
        if (
            mode == "confined"
            and facts.apparmor_abi is None
            and self.confined_profiles
            and "app_armor" in self.confined_profiles.model_fields_set
        ):
            raise RuleViolation(
                "confinedProfiles.appArmor",
                self.confined_profiles.app_armor,
                f"{self.node_os} nodes run no AppArmor: the kubelet refuses a pod that names an AppArmor profile there; remove it",
            )
        if mode == "baseline" and facts.baseline:
            raise RuleViolation(
                "nodeOs",
                self.node_os,
                f"jobSecurityMode 'baseline' cannot build on {self.node_os}: {facts.baseline}"
                + ("; use jobSecurityMode 'confined'" if not facts.confined else ""),
            )
        return self

    def confined_profile_names(self) -> ProfileNames | None:
        """The build container's Localhost profiles in the 'confined' mode; None in the other modes."""
        if self.job_security_mode != "confined":
            return None
        assert self.node_os is not None  # _mode_fits_node_os
        names = self.confined_profiles or ConfinedProfiles()
        abi = NODE_OS[self.node_os].apparmor_abi
        return ProfileNames(seccomp=names.seccomp, apparmor=names.app_armor if abi else None, apparmor_abi=abi)

    @model_validator(mode="after")
    def _job_image_is_allowed(self) -> RunnerConfig:
        if not any(fnmatch.fnmatchcase(self.job_image, pattern) for pattern in self.allowed_images):
            raise ValueError(f"jobImage {self.job_image!r} is not matched by allowedImages {self.allowed_images}")
        return self

    @model_validator(mode="after")
    def _helper_limits_what_build_limits(self) -> RunnerConfig:
        # The job LimitRange caps ephemeral storage at the build's limit; a container without its own
        # limit would get the LimitRange default, so the helper must set one whenever the build does.
        build, helper = self.build_resources, self.helper_resources
        for field in ("ephemeral_storage_request", "ephemeral_storage_limit"):
            if getattr(build, field) is not None and getattr(helper, field) is None:
                key = to_camel(field)
                raise RuleViolation(
                    f"helperResources.{key}",
                    None,
                    f"must be set because buildResources.{key} is: otherwise the helper, init-permissions and "
                    "service containers get the job namespace's LimitRange values instead of their own",
                )
        return self

    @model_validator(mode="after")
    def _runner_can_pick_jobs(self) -> RunnerConfig:
        if not self.tags and not self.run_untagged:
            raise ValueError("tags is empty and runUntagged is false: the runner could never pick a job")
        if len(set(self.tags)) != len(self.tags):
            raise ValueError(f"tags {self.tags} contain duplicates")
        return self
