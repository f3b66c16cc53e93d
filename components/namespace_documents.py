"""Pure builders for the namespaces' documents: Pod Security labels, the job LimitRange and quota.

They return plain camelCase dicts, exactly as they appear in the manifest, so the same data feeds the
Pulumi resources, the offline schema validation and the tests.
"""

from __future__ import annotations

from typing import Any

from .config import JobQuota, JobSecurityMode, ProfileNames, RunnerConfig
from .config.fields import largest_quantity
from .marks import APPARMOR_PROFILE_ANNOTATION, JOB_SECURITY_MODE_ANNOTATION, MANAGED_BY, PSA_LABEL_PREFIX, SECCOMP_PROFILE_ANNOTATION

# Ref: https://kubernetes.io/docs/concepts/security/pod-security-standards/ and moby/buildkit
# docs/rootless.md: rootless BuildKit needs privilege escalation (newuidmap is setuid), so the job
# namespace can never be 'restricted'; explicit Unconfined profiles need 'privileged'.
JOB_PSA_LEVELS: dict[JobSecurityMode, dict[str, str]] = {
    "baseline": {"enforce": "baseline", "warn": "restricted", "audit": "restricted"},
    # Baseline admits Localhost profiles (restricted would too, but refuses the build's escalation).
    "confined": {"enforce": "baseline", "warn": "restricted", "audit": "restricted"},
    "unconfined": {"enforce": "privileged", "warn": "baseline", "audit": "baseline"},
}
MANAGER_PSA_LEVELS = {"enforce": "restricted", "warn": "restricted", "audit": "restricted"}


def psa_labels(levels: dict[str, str], version: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    for mode, level in levels.items():
        labels[f"{PSA_LABEL_PREFIX}/{mode}"] = level
        labels[f"{PSA_LABEL_PREFIX}/{mode}-version"] = version
    return labels


def manager_namespace_labels(pod_security_version: str) -> dict[str, str]:
    return {**MANAGED_BY, **psa_labels(MANAGER_PSA_LEVELS, pod_security_version)}


def job_namespace_annotations(job_security_mode: JobSecurityMode, profiles: ProfileNames | None = None) -> dict[str, str]:
    """The mode, and in 'confined' the exact Localhost profile names the pack admits on the build container."""
    annotations: dict[str, str] = {JOB_SECURITY_MODE_ANNOTATION: job_security_mode}
    if profiles is not None:
        annotations[SECCOMP_PROFILE_ANNOTATION] = profiles.seccomp
        if profiles.apparmor is not None:
            annotations[APPARMOR_PROFILE_ANNOTATION] = profiles.apparmor
    return annotations


def job_namespace_labels(job_security_mode: JobSecurityMode, pod_security_version: str) -> dict[str, str]:
    return {**MANAGED_BY, **psa_labels(JOB_PSA_LEVELS[job_security_mode], pod_security_version)}


def job_limit_range_spec(runner: RunnerConfig) -> dict[str, Any]:
    """Maxima so one build cannot starve the node, and small defaults for a container nobody configured.

    Every container the runner creates sets its own resources (runner_config.py); the defaults apply
    to every container that sets none, init containers included, and the quota then counts them. So
    they are the helper's values, not the build's: an unforeseen container gets little, and a pod
    never counts twice the build's limits. A LimitRange without a `default` would use `max` instead.
    Ref: https://kubernetes.io/docs/concepts/policy/limit-range/
    """
    build, helper = runner.build_resources, runner.helper_resources
    maximum = {
        "cpu": largest_quantity(build.cpu_limit, runner.cpu_limit_overwrite_max),
        "memory": largest_quantity(build.memory_limit, runner.memory_limit_overwrite_max),
    }
    default = {"cpu": helper.cpu_limit, "memory": helper.memory_limit}
    default_request = {"cpu": helper.cpu_request, "memory": helper.memory_request}
    if build.ephemeral_storage_limit:
        maximum["ephemeral-storage"] = build.ephemeral_storage_limit
    if helper.ephemeral_storage_limit:
        default["ephemeral-storage"] = helper.ephemeral_storage_limit
    if helper.ephemeral_storage_request:
        default_request["ephemeral-storage"] = helper.ephemeral_storage_request
    return {"limits": [{"type": "Container", "max": maximum, "default": default, "defaultRequest": default_request}]}


def job_quota_spec(quota: JobQuota | None) -> dict[str, Any] | None:
    if quota is None:
        return None
    return {
        "hard": {
            "limits.cpu": quota.cpu,
            "limits.memory": quota.memory,
            "limits.ephemeral-storage": quota.ephemeral_storage,
            "pods": str(quota.pods),
        }
    }
