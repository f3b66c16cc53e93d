"""Values for the official gitlab-runner chart, built by a pure function.

Ref: https://gitlab.com/gitlab-org/charts/gitlab-runner/-/blob/v0.86.0/values.yaml
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .config import RunnerConfig

METRICS_PORT = 9252  # the chart's metrics.port default; the manager NetworkPolicy admits scrapes on it

MANAGER_UID = 100  # the gitlab-runner image's user; the chart's default podSecurityContext.runAsUser
MANAGER_FS_GROUP = 65533
# Time the manager gets after SIGTERM besides the longest job: the runner stops taking jobs and waits.
SHUTDOWN_MARGIN_SECONDS = 120
# PID 1 is dumb-init, which forwards the signal to the runner; the hook returns when the runner exits.
GRACEFUL_STOP_COMMAND = ("/bin/bash", "-c", "kill -QUIT 1; while kill -0 1 2>/dev/null; do sleep 5; done")


def manager_security_context() -> dict[str, Any]:
    """PSA 'restricted' for the manager container (the chart sets no seccompProfile by default)."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": False,
        "runAsNonRoot": True,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def manager_pod_security_context() -> dict[str, Any]:
    return {
        "runAsUser": MANAGER_UID,
        "fsGroup": MANAGER_FS_GROUP,
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _quantities(*, cpu: str, memory: str, ephemeral: str | None) -> dict[str, str]:
    return {"cpu": cpu, "memory": memory, **({"ephemeral-storage": ephemeral} if ephemeral else {})}


def escape_for_tpl(text: str) -> str:
    """Make text survive Helm `tpl` unchanged: every `{{` becomes a template action printing `{{`.

    str.replace does not rescan its output, so the `{{` inside the replacement is not escaped again.
    Ref: https://gitlab.com/gitlab-org/charts/gitlab-runner/-/blob/v0.86.0/templates/configmap.yaml (`tpl` of runners.config)
    """
    return text.replace("{{", '{{ "{{" }}')


def build_helm_values(
    runner: RunnerConfig,
    *,
    gitlab_url: str,
    job_namespace: str,
    secret_name: str,
    service_account: Any,
    runner_config_toml: str,
    pod_annotations: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Chart values. `runner_config_toml` is the plain TOML: it is escaped here for the chart's `tpl`.

    `service_account` and annotation values may be Pulumi Inputs: they are placed, never inspected.
    """
    res = runner.manager_resources
    values: dict[str, Any] = {
        "gitlabUrl": gitlab_url,
        "concurrent": runner.concurrent,
        "checkInterval": runner.check_interval_seconds,
        # The runner is created and owned by Pulumi (gitlab.UserRunner). The chart's preStop
        # `unregister --all-runners` would remove this manager's registration on every pod stop; the
        # runner itself stays, but there is nothing to gain from it and a rollout must not touch
        # server-side state Pulumi manages. See README "Graceful shutdown".
        "unregisterRunners": False,
        # Kubernetes stops a pod with SIGTERM, which the runner treats as "abort all builds". The
        # preStop hook sends SIGQUIT instead (stop taking jobs, finish running ones) and waits for the
        # process to exit; the grace period covers the longest job the server allows plus a margin.
        # Setting deploymentLifecycle also replaces the chart's `unregister` preStop hook.
        # Ref: gitlab-org/gitlab-runner#4215; chart templates/_helpers.tpl "gitlab-runner.unregisterRunners".
        "terminationGracePeriodSeconds": runner.maximum_timeout_seconds + SHUTDOWN_MARGIN_SECONDS,
        "deploymentLifecycle": {"preStop": {"exec": {"command": list(GRACEFUL_STOP_COMMAND)}}},
        # Recreate: the new manager starts only once the old one has finished its jobs and is gone. The
        # chart renders no strategy, and the default RollingUpdate runs the draining old manager (up to
        # the grace period above) beside the new one, which takes new jobs: up to 2 x concurrent job
        # pods, over a quota sized for one manager ('exceeded quota' failures). The price: a rollout
        # pauses job pickup (jobs wait in GitLab, none fail) until the old manager's jobs end. README
        # "Manager rollouts".
        # Ref: https://kubernetes.io/docs/concepts/workloads/controllers/deployment/#recreate-deployment
        "strategy": {"type": "Recreate"},
        "rbac": {"create": False},
        "serviceAccount": {"create": False, "name": service_account},
        "securityContext": manager_security_context(),
        "podSecurityContext": manager_pod_security_context(),
        "resources": {
            "requests": _quantities(cpu=res.cpu_request, memory=res.memory_request, ephemeral=res.ephemeral_storage_request),
            "limits": _quantities(cpu=res.cpu_limit, memory=res.memory_limit, ephemeral=res.ephemeral_storage_limit),
        },
        "metrics": {
            "enabled": runner.metrics_enabled,
            "port": METRICS_PORT,
            "podMonitor": {"enabled": runner.metrics_enabled and runner.pod_monitor},
        },
        "runners": {
            "secret": secret_name,
            "config": escape_for_tpl(runner_config_toml),
            "jobNamespace": job_namespace,
        },
    }
    if pod_annotations:
        values["podAnnotations"] = dict(pod_annotations)
    if runner.manager_image_tag:
        values["image"] = {"registry": "registry.gitlab.com", "image": "gitlab-org/gitlab-runner", "tag": runner.manager_image_tag}
    if runner.node_selector:
        values["nodeSelector"] = dict(runner.node_selector)
    return values
