"""The runner's config.toml as a typed model, and the pure builder that fills it from stack config.

The chart passes ``runners.config`` through Helm ``tpl``; the Helm values builder escapes the TOML
for Go templates (``helm_values.escape_for_tpl``).

Ref: https://docs.gitlab.com/runner/executors/kubernetes/ (config.toml keys)
Ref: https://github.com/moby/buildkit/blob/v0.25.1/docs/rootless.md (what rootless BuildKit needs)
"""

from __future__ import annotations

import json
from typing import Any, Literal

import tomli_w
from pydantic import BaseModel, ConfigDict

from .config import RunnerConfig
from .marks import DO_NOT_DISRUPT_ANNOTATIONS, job_priority_class_name

BUILD_CONTAINER = "build"
# allowed_services must never be empty: the runner reads an empty list as "any service". Image names
# are lowercase, so this pattern admits none. Ref: https://gitlab.com/gitlab-org/gitlab-runner/-/blob/v18.9.0/common/allowed_images.go
NO_SERVICES_SENTINEL = "NO-SERVICES-ALLOWED"
BUILDKIT_UID = 1000  # the rootless image's `user`; only this UID has a subuid range
BUILDKIT_STATE_DIR = "/home/user/.local/share/buildkit"
APPARMOR_ANNOTATION = f"container.apparmor.security.beta.kubernetes.io/{BUILD_CONTAINER}"


class _Toml(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Capabilities(_Toml):
    add: list[str] = []
    drop: list[str] = []


class ContainerSecurityContext(_Toml):
    privileged: bool = False
    allow_privilege_escalation: bool | None = None
    run_as_non_root: bool | None = None
    run_as_user: int | None = None
    run_as_group: int | None = None
    capabilities: Capabilities | None = None


class PodSecurityContext(_Toml):
    fs_group: int | None = None


class EmptyDir(_Toml):
    name: str
    mount_path: str
    medium: Literal["Memory"] | None = None  # unset = node disk
    size_limit: str | None = None


class Volumes(_Toml):
    empty_dir: list[EmptyDir] = []


class PodSpecPatch(_Toml):
    name: str
    patch_type: Literal["strategic", "merge", "json"] = "strategic"
    patch: str


class KubernetesExecutor(_Toml):
    namespace: str
    image: str
    allowed_images: list[str]
    allowed_services: list[str]
    helper_image: str | None = None
    privileged: bool = False
    allow_privilege_escalation: bool | None = None
    service_account: str
    automount_service_account_token: bool = False
    poll_timeout: int
    cpu_request: str
    cpu_limit: str
    memory_request: str
    memory_limit: str
    ephemeral_storage_request: str | None = None
    ephemeral_storage_limit: str | None = None
    helper_cpu_request: str
    helper_cpu_limit: str
    helper_memory_request: str
    helper_memory_limit: str
    helper_ephemeral_storage_request: str | None = None
    helper_ephemeral_storage_limit: str | None = None
    service_cpu_request: str
    service_cpu_limit: str
    service_memory_request: str
    service_memory_limit: str
    service_ephemeral_storage_request: str | None = None
    service_ephemeral_storage_limit: str | None = None
    cpu_limit_overwrite_max_allowed: str | None = None
    memory_limit_overwrite_max_allowed: str | None = None
    node_selector: dict[str, str] = {}
    priority_class_name: str | None = None
    pod_annotations: dict[str, str] = {}
    pod_security_context: PodSecurityContext
    build_container_security_context: ContainerSecurityContext
    helper_container_security_context: ContainerSecurityContext
    service_container_security_context: ContainerSecurityContext
    init_permissions_container_security_context: ContainerSecurityContext
    volumes: Volumes
    pod_spec: list[PodSpecPatch] = []


class Runner(_Toml):
    name: str
    executor: Literal["kubernetes"] = "kubernetes"
    environment: list[str] = []
    feature_flags: dict[str, bool] = {}
    kubernetes: KubernetesExecutor


class RunnerConfigFile(_Toml):
    runners: list[Runner]


def build_runner_config(
    runner: RunnerConfig,
    *,
    environment: str,
    job_namespace: str,
    job_service_account: str,
    automount_service_account_token: bool,
) -> RunnerConfigFile:
    """The `[[runners]]` template for the chart: one Kubernetes-executor runner for rootless BuildKit."""
    unconfined = runner.job_security_mode == "unconfined"
    confined = runner.confined_profile_names()
    build = runner.build_resources
    helper = runner.helper_resources
    patches: list[PodSpecPatch] = []
    annotations: dict[str, str] = dict(DO_NOT_DISRUPT_ANNOTATIONS)
    if unconfined:
        # Runner 18.9 (chart 0.86.0) has no native seccomp/AppArmor fields: AppArmor goes through the
        # annotation, seccomp through a pod_spec patch.
        # Ref: https://docs.gitlab.com/runner/executors/kubernetes/#overwrite-generated-pod-specifications
        annotations[APPARMOR_ANNOTATION] = "unconfined"
        patches.append(
            PodSpecPatch(
                name="buildkit-seccomp-unconfined",
                patch=json.dumps(
                    {"containers": [{"name": BUILD_CONTAINER, "securityContext": {"seccompProfile": {"type": "Unconfined"}}}]},
                    sort_keys=True,
                ),
            )
        )
    if confined is not None:
        # The stack's Localhost profiles on the build container only; the helper and init containers keep
        # the runtime's defaults. The pack admits exactly these names (the job namespace's marks).
        context: dict[str, Any] = {"seccompProfile": {"type": "Localhost", "localhostProfile": confined.seccomp}}
        if confined.apparmor is not None:
            context["appArmorProfile"] = {"type": "Localhost", "localhostProfile": confined.apparmor}
        patches.append(
            PodSpecPatch(
                name="buildkit-localhost-profiles",
                patch=json.dumps({"containers": [{"name": BUILD_CONTAINER, "securityContext": context}]}, sort_keys=True),
            )
        )
    return RunnerConfigFile(
        runners=[
            Runner(
                name=f"{environment}-buildkit",
                # Ref: moby/buildkit examples/kubernetes/*.rootless.yaml: /proc cannot be unmasked in a normal pod.
                environment=["BUILDKITD_FLAGS=--oci-worker-no-process-sandbox"],
                feature_flags={"FF_USE_ADVANCED_POD_SPEC_CONFIGURATION": True} if patches else {},
                kubernetes=KubernetesExecutor(
                    namespace=job_namespace,
                    image=runner.job_image,
                    # Jobs may only pick these images: the relaxed build context below is for BuildKit.
                    allowed_images=list(runner.allowed_images),
                    allowed_services=list(runner.allowed_services) or [NO_SERVICES_SENTINEL],
                    helper_image=runner.helper_image,
                    privileged=False,
                    service_account=job_service_account,
                    automount_service_account_token=automount_service_account_token,
                    poll_timeout=runner.poll_timeout_seconds,
                    cpu_request=build.cpu_request,
                    cpu_limit=build.cpu_limit,
                    memory_request=build.memory_request,
                    memory_limit=build.memory_limit,
                    ephemeral_storage_request=build.ephemeral_storage_request,
                    ephemeral_storage_limit=build.ephemeral_storage_limit,
                    helper_cpu_request=helper.cpu_request,
                    helper_cpu_limit=helper.cpu_limit,
                    helper_memory_request=helper.memory_request,
                    helper_memory_limit=helper.memory_limit,
                    helper_ephemeral_storage_request=helper.ephemeral_storage_request,
                    helper_ephemeral_storage_limit=helper.ephemeral_storage_limit,
                    # Every container the executor creates gets explicit resources: one without them
                    # would get the job LimitRange's defaults and count against the quota with those.
                    # The init-permissions container takes the helper's (executors/kubernetes
                    # initContainerResources); services get the helper's values too.
                    service_cpu_request=helper.cpu_request,
                    service_cpu_limit=helper.cpu_limit,
                    service_memory_request=helper.memory_request,
                    service_memory_limit=helper.memory_limit,
                    service_ephemeral_storage_request=helper.ephemeral_storage_request,
                    service_ephemeral_storage_limit=helper.ephemeral_storage_limit,
                    cpu_limit_overwrite_max_allowed=runner.cpu_limit_overwrite_max,
                    memory_limit_overwrite_max_allowed=runner.memory_limit_overwrite_max,
                    node_selector=dict(runner.node_selector),
                    priority_class_name=job_priority_class_name(job_namespace),
                    pod_annotations=annotations,
                    pod_security_context=PodSecurityContext(fs_group=BUILDKIT_UID),
                    # The init-permissions container (helper image) only touches and chmods the log file.
                    init_permissions_container_security_context=ContainerSecurityContext(
                        privileged=False,
                        allow_privilege_escalation=False,
                        capabilities=Capabilities(drop=["NET_RAW"]),
                    ),
                    # rootlesskit calls setuid newuidmap: escalation must stay allowed and SETUID/SETGID
                    # must stay in the bounding set, so no drop ALL here (moby/buildkit#1671).
                    build_container_security_context=ContainerSecurityContext(
                        privileged=False,
                        allow_privilege_escalation=True,
                        run_as_non_root=True,
                        run_as_user=BUILDKIT_UID,
                        run_as_group=BUILDKIT_UID,
                        capabilities=Capabilities(drop=["NET_RAW"]),
                    ),
                    helper_container_security_context=ContainerSecurityContext(
                        privileged=False,
                        allow_privilege_escalation=False,
                        capabilities=Capabilities(drop=["NET_RAW"]),
                    ),
                    service_container_security_context=ContainerSecurityContext(
                        privileged=False,
                        allow_privilege_escalation=False,
                        capabilities=Capabilities(drop=["NET_RAW"]),
                    ),
                    volumes=Volumes(
                        empty_dir=[
                            EmptyDir(
                                name="buildkit-state",
                                mount_path=BUILDKIT_STATE_DIR,
                                size_limit=runner.buildkit_state_size_limit,
                            )
                        ]
                    ),
                    pod_spec=patches,
                ),
            )
        ]
    )


def _prune(value: Any) -> Any:
    """Drop None and empty tables/arrays: TOML has no null, and empty sections are only noise."""
    if isinstance(value, dict):
        pruned = {k: _prune(v) for k, v in value.items() if v is not None}
        return {k: v for k, v in pruned.items() if v not in ({}, [])}
    if isinstance(value, list):
        return [_prune(v) for v in value]
    return value


def render_toml(model: RunnerConfigFile) -> str:
    """TOML text of the model, without None values and empty sections."""
    return tomli_w.dumps(_prune(model.model_dump()))
