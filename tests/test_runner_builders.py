"""Pure builders for the runner: config.toml (parsed back with tomllib, key by key) and Helm values."""

from __future__ import annotations

import json
import tomllib

from conftest import make_config, runner_config_of

from components.config import parse_config
from components.helm_values import GRACEFUL_STOP_COMMAND, SHUTDOWN_MARGIN_SECONDS, build_helm_values, escape_for_tpl
from components.runner_config import APPARMOR_ANNOTATION, BUILDKIT_STATE_DIR, render_toml

SCOPE = {"type": "project_type", "projectId": 1}


def runner_toml(**runner: object) -> dict:
    cfg = parse_config(make_config(runner={"scope": SCOPE, **runner}))
    return tomllib.loads(render_toml(runner_config_of(cfg)))


def test_baseline_runner_config_key_by_key() -> None:
    doc = runner_toml()
    (runner,) = doc["runners"]
    assert runner["executor"] == "kubernetes"
    assert runner["environment"] == ["BUILDKITD_FLAGS=--oci-worker-no-process-sandbox"]
    assert "feature_flags" not in runner
    kube = runner["kubernetes"]
    assert kube["namespace"] == "gitlab-runner-jobs"
    assert kube["image"] == "moby/buildkit:v0.25.1-rootless"
    assert kube["privileged"] is False
    assert kube["service_account"] == "buildkit-job"
    assert kube["automount_service_account_token"] is False
    assert kube["poll_timeout"] == 600
    assert (kube["cpu_request"], kube["cpu_limit"], kube["memory_request"], kube["memory_limit"]) == ("1", "4", "2Gi", "8Gi")
    assert (kube["ephemeral_storage_request"], kube["ephemeral_storage_limit"]) == ("10Gi", "40Gi")
    assert (kube["helper_cpu_request"], kube["helper_memory_limit"]) == ("100m", "256Mi")
    assert kube["build_container_security_context"] == {
        "privileged": False,
        "allow_privilege_escalation": True,
        "run_as_non_root": True,
        "run_as_user": 1000,
        "run_as_group": 1000,
        "capabilities": {"drop": ["NET_RAW"]},
    }
    for key in ("helper_container_security_context", "service_container_security_context"):
        assert kube[key] == {"privileged": False, "allow_privilege_escalation": False, "capabilities": {"drop": ["NET_RAW"]}}
    assert kube["pod_security_context"] == {"fs_group": 1000}
    assert kube["volumes"] == {"empty_dir": [{"name": "buildkit-state", "mount_path": BUILDKIT_STATE_DIR, "size_limit": "30Gi"}]}
    # No seccomp/AppArmor settings in baseline mode, and no overwrite of anything; every job pod carries
    # the autoscalers' do-not-disrupt marks and the stack's PriorityClass.
    assert kube["pod_annotations"] == {"karpenter.sh/do-not-disrupt": "true", "cluster-autoscaler.kubernetes.io/safe-to-evict": "false"}
    assert kube["priority_class_name"] == f"gitlab-buildkit-runner-jobs-{kube['namespace']}"
    assert "pod_spec" not in kube
    assert not [k for k in kube if k.endswith("_overwrite_allowed")]
    assert "helper_image" not in kube


def test_unconfined_mode_adds_apparmor_annotation_and_seccomp_patch() -> None:
    doc = runner_toml(jobSecurityMode="unconfined", acknowledgeUnconfined=True)
    (runner,) = doc["runners"]
    kube = runner["kubernetes"]
    assert runner["feature_flags"] == {"FF_USE_ADVANCED_POD_SPEC_CONFIGURATION": True}
    assert kube["pod_annotations"] == {
        APPARMOR_ANNOTATION: "unconfined",
        "karpenter.sh/do-not-disrupt": "true",
        "cluster-autoscaler.kubernetes.io/safe-to-evict": "false",
    }
    (patch,) = kube["pod_spec"]
    assert patch["patch_type"] == "strategic"
    assert json.loads(patch["patch"]) == {"containers": [{"name": "build", "securityContext": {"seccompProfile": {"type": "Unconfined"}}}]}


def test_resource_overwrite_maxima_only_when_configured() -> None:
    kube = runner_toml(cpuLimitOverwriteMax="8", memoryLimitOverwriteMax="16Gi")["runners"][0]["kubernetes"]
    assert kube["cpu_limit_overwrite_max_allowed"] == "8"
    assert kube["memory_limit_overwrite_max_allowed"] == "16Gi"


def test_escape_for_tpl_survives_go_templates() -> None:
    assert escape_for_tpl('a = "{{x}}"') == 'a = "{{ "{{" }}x}}"'
    assert escape_for_tpl("no braces") == "no braces"
    assert escape_for_tpl("}}") == "}}"


def helm_values(**runner: object) -> dict:
    cfg = parse_config(make_config(runner={"scope": SCOPE, **runner}))
    return build_helm_values(
        cfg.runner,
        gitlab_url=cfg.gitlab.url,
        job_namespace=cfg.kubernetes.job_namespace,
        secret_name="tok",
        service_account="mgr",
        runner_config_toml="TOML",
        pod_annotations={"a": "1"},
    )


def test_helm_values_disable_chart_rbac_and_use_our_identity() -> None:
    values = helm_values()
    assert values["rbac"] == {"create": False}
    assert values["serviceAccount"] == {"create": False, "name": "mgr"}
    assert values["runners"] == {"secret": "tok", "config": "TOML", "jobNamespace": "gitlab-runner-jobs"}
    assert values["gitlabUrl"] == "https://gitlab.example.com"
    assert "runnerToken" not in values and "runnerRegistrationToken" not in values
    assert values["podAnnotations"] == {"a": "1"}


def test_helm_values_manager_is_restricted() -> None:
    values = helm_values()
    assert values["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": False,
        "runAsNonRoot": True,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert values["podSecurityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert values["podSecurityContext"]["runAsNonRoot"] is True
    assert values["resources"] == {
        "requests": {"cpu": "100m", "memory": "128Mi", "ephemeral-storage": "100Mi"},
        "limits": {"cpu": "500m", "memory": "512Mi", "ephemeral-storage": "1Gi"},
    }


def test_manager_ephemeral_storage_reaches_the_chart() -> None:
    """Regression: managerResources.ephemeralStorage* were accepted by the config and silently dropped."""
    manager = {"cpuRequest": "50m", "cpuLimit": "1", "memoryRequest": "64Mi", "memoryLimit": "1Gi"}
    values = helm_values(managerResources={**manager, "ephemeralStorageRequest": "2Gi", "ephemeralStorageLimit": "5Gi"})
    assert values["resources"]["requests"]["ephemeral-storage"] == "2Gi"
    assert values["resources"]["limits"]["ephemeral-storage"] == "5Gi"
    assert "ephemeral-storage" not in helm_values(managerResources=manager)["resources"]["limits"]


def test_helm_values_operations_from_config() -> None:
    values = helm_values(concurrent=7, checkIntervalSeconds=9, maximumTimeoutSeconds=5400, metricsEnabled=False, podMonitor=True)
    assert values["concurrent"] == 7 and values["checkInterval"] == 9
    assert values["terminationGracePeriodSeconds"] == 5400 + SHUTDOWN_MARGIN_SECONDS
    assert values["deploymentLifecycle"] == {"preStop": {"exec": {"command": list(GRACEFUL_STOP_COMMAND)}}}
    assert values["unregisterRunners"] is False
    # a PodMonitor without metrics would scrape nothing: off when metrics are off
    assert values["metrics"] == {"enabled": False, "port": 9252, "podMonitor": {"enabled": False}}


def test_helm_values_pin_manager_image_when_configured() -> None:
    assert "image" not in helm_values()
    assert helm_values(managerImageTag="alpine-v18.9.0")["image"]["tag"] == "alpine-v18.9.0"


# --- Capacity: every container the executor creates has its own resources -----------------------

EXECUTOR_CONTAINERS = ("", "helper_", "service_")  # build, helper (and init-permissions), service
RESOURCE_KEYS = ("cpu_request", "cpu_limit", "memory_request", "memory_limit", "ephemeral_storage_request", "ephemeral_storage_limit")


def test_every_executor_container_sets_cpu_memory_and_ephemeral_storage() -> None:
    """Regression: helper/service containers had no ephemeral storage and init-permissions no context, so the
    job LimitRange's defaults (then the build's) landed on them and a pod counted about twice its limits."""
    kube = runner_toml()["runners"][0]["kubernetes"]
    for prefix in EXECUTOR_CONTAINERS:
        for key in RESOURCE_KEYS:
            assert kube.get(prefix + key), f"{prefix}{key} is not set"
    assert (kube["helper_ephemeral_storage_request"], kube["helper_ephemeral_storage_limit"]) == ("100Mi", "1Gi")
    assert (kube["service_ephemeral_storage_request"], kube["service_ephemeral_storage_limit"]) == ("100Mi", "1Gi")
    # The init-permissions container takes the helper's resources (executor initContainerResources) and gets a context.
    assert kube["init_permissions_container_security_context"] == {
        "privileged": False,
        "allow_privilege_escalation": False,
        "capabilities": {"drop": ["NET_RAW"]},
    }


def test_helper_resources_reach_helper_and_service_keys() -> None:
    helper = {
        "cpuRequest": "200m",
        "cpuLimit": "1",
        "memoryRequest": "256Mi",
        "memoryLimit": "512Mi",
        "ephemeralStorageRequest": "1Gi",
        "ephemeralStorageLimit": "3Gi",
    }
    kube = runner_toml(helperResources=helper)["runners"][0]["kubernetes"]
    for prefix in ("helper_", "service_"):
        assert [kube[prefix + key] for key in RESOURCE_KEYS] == ["200m", "1", "256Mi", "512Mi", "1Gi", "3Gi"]


def test_services_are_denied_unless_listed() -> None:
    """An empty allowed_services list means *any* service to the runner: the TOML carries a pattern no image matches."""
    assert runner_toml()["runners"][0]["kubernetes"]["allowed_services"] == ["NO-SERVICES-ALLOWED"]
    kube = runner_toml(allowedServices=["postgres:16*"])["runners"][0]["kubernetes"]
    assert kube["allowed_services"] == ["postgres:16*"]


def test_pod_spec_patch_only_carries_what_has_no_native_field() -> None:
    """Runner 18.9 has native fields for user, group, capabilities and escalation: the feature-flagged
    pod_spec patch sets seccomp only (no native field before 18.11), on the build container only."""
    kube = runner_toml(jobSecurityMode="unconfined", acknowledgeUnconfined=True)["runners"][0]["kubernetes"]
    (patch,) = kube["pod_spec"]
    (container,) = json.loads(patch["patch"])["containers"]
    assert container["name"] == "build"
    assert container["securityContext"] == {"seccompProfile": {"type": "Unconfined"}}
    assert kube["build_container_security_context"]["run_as_user"] == 1000
