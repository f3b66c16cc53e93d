"""The stack's namespaces and the job pods the runner creates, against a real kube-apiserver with Pod
Security admission, LimitRanger and ResourceQuota (and the quota controller).

Proves what mocks cannot: PSA admits the manager pod at 'restricted' and the job pod at the job
namespace's level, the apiserver applies LimitRange defaults to a container that sets none, and
`runner.concurrent` job pods fit the quota (one more does not). The job pod is built from the
generated config.toml the way the executor builds it (e2e/job_pod.py, a stand-in for the runner).
"""

from __future__ import annotations

import copy
import time
import tomllib
from typing import Any

import pytest

from e2e.cluster import ApiError, LocalCluster
from e2e.job_pod import job_pod
from tests.conftest import make_config
from verify.chart import render_release
from verify.harness import ProgramRun, run_program, run_stack


def manifests(run: ProgramRun, kind: str) -> list[dict[str, Any]]:
    found = []
    for r in run.resources:
        if r.type == f"kubernetes:core/v1:{kind}":
            found.append({**{k: v for k, v in r.inputs.items() if k not in ("apiVersion", "kind")}, "apiVersion": "v1", "kind": kind})
    return found


def deploy_namespaces(cluster: LocalCluster, run: ProgramRun) -> None:
    for kind in ("Namespace", "ServiceAccount", "LimitRange", "ResourceQuota"):
        for manifest in manifests(run, kind):
            cluster.create(manifest)
    for r in run.resources:  # the job pods' PriorityClass (cluster-scoped: one per job namespace)
        if r.type == "kubernetes:scheduling.k8s.io/v1:PriorityClass":
            manifest = {**{k: v for k, v in r.inputs.items() if k not in ("apiVersion", "kind")}}
            manifest.update(apiVersion="scheduling.k8s.io/v1", kind="PriorityClass", value=int(manifest["value"]))
            try:
                cluster.create(manifest)
            except ApiError as exc:
                if "already exists" not in str(exc):
                    raise
    for quota in manifests(run, "ResourceQuota"):  # quota admission needs the controller's first count
        deadline = time.monotonic() + 60
        while not (cluster.get(quota).get("status") or {}).get("hard"):
            assert time.monotonic() < deadline, "the quota controller never counted the quota"
            time.sleep(0.5)


def runner_kube(run: ProgramRun) -> dict[str, Any]:
    chart = render_release(run.one("kubernetes:helm.sh/v3:Release").inputs)
    return tomllib.loads(chart.config_template_toml())["runners"][0]["kubernetes"]


def rejected(call: Any) -> str:
    with pytest.raises(ApiError) as caught:
        call()
    return str(caught.value)


@pytest.fixture(scope="module")
def prod(cluster: LocalCluster) -> ProgramRun:
    run = run_stack("prod")
    deploy_namespaces(cluster, run)
    return run


def test_the_manager_pod_is_admitted_under_restricted(cluster: LocalCluster, prod: ProgramRun) -> None:
    chart = render_release(prod.one("kubernetes:helm.sh/v3:Release").inputs)
    (deployment,) = chart.of_kind("Deployment")
    template = deployment["spec"]["template"]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "manager", "namespace": "gitlab-runner"}, "spec": template["spec"]}
    cluster.create(pod)
    weaker = copy.deepcopy(pod)
    weaker["metadata"]["name"] = "manager-weaker"
    weaker["spec"]["securityContext"].pop("seccompProfile")
    weaker["spec"]["containers"][0]["securityContext"].pop("seccompProfile")
    assert 'violates PodSecurity "restricted:v1.33"' in rejected(lambda: cluster.create(weaker))


def test_the_job_pod_is_admitted_with_its_own_resources(cluster: LocalCluster, prod: ProgramRun) -> None:
    kube = runner_kube(prod)
    created = cluster.create(job_pod(kube, "job-1"))
    # The stack's PriorityClass resolved by the Priority admission plugin, and the autoscalers' marks.
    assert created["spec"]["priorityClassName"] == f"gitlab-buildkit-runner-jobs-{kube['namespace']}"
    assert created["spec"]["priority"] == 1000 and created["spec"]["preemptionPolicy"] == "Never"
    assert created["metadata"]["annotations"]["karpenter.sh/do-not-disrupt"] == "true"
    assert created["metadata"]["annotations"]["cluster-autoscaler.kubernetes.io/safe-to-evict"] == "false"
    containers = {c["name"]: c for c in [*created["spec"]["initContainers"], *created["spec"]["containers"]]}
    for name, prefix in (("build", ""), ("helper", "helper_"), ("init-permissions", "helper_")):
        resources = containers[name]["resources"]
        assert resources["limits"]["cpu"] == kube[f"{prefix}cpu_limit"], name
        assert resources["limits"]["ephemeral-storage"] == kube[f"{prefix}ephemeral_storage_limit"], name
    # ... and the same pod is refused where PSA enforces restricted (escalation, capabilities).
    elsewhere = job_pod({**kube, "namespace": "gitlab-runner", "service_account": "gitlab-runner-manager"}, "job-in-manager-namespace")
    assert 'violates PodSecurity "restricted:v1.33"' in rejected(lambda: cluster.create(elsewhere))


def test_a_container_that_sets_nothing_gets_the_small_limitrange_defaults(cluster: LocalCluster, prod: ProgramRun) -> None:
    """LimitRange defaults land on every container that sets none, init containers included."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "bare", "namespace": "gitlab-runner-jobs"},
        "spec": {
            "initContainers": [{"name": "init", "image": "x", "securityContext": {"allowPrivilegeEscalation": False}}],
            "containers": [{"name": "c", "image": "x", "securityContext": {"allowPrivilegeEscalation": False}}],
        },
    }
    created = cluster.create(pod)
    helper = runner_kube(prod)
    for container in [*created["spec"]["initContainers"], *created["spec"]["containers"]]:
        assert container["resources"]["limits"] == {
            "cpu": helper["helper_cpu_limit"],
            "memory": helper["helper_memory_limit"],
            "ephemeral-storage": helper["helper_ephemeral_storage_limit"],
        }
    cluster.request("DELETE", "/api/v1/namespaces/gitlab-runner-jobs/pods/bare")


TIGHT_QUOTA = {"cpu": "18", "memory": "40Gi", "ephemeralStorage": "200Gi", "pods": 10}


def test_concurrent_job_pods_fit_the_quota_and_one_more_does_not(cluster: LocalCluster) -> None:
    """The config rule's arithmetic, checked by the apiserver: every container (init included) counts its
    own limits, so 4 pods x (build 4 + helper 0.5 CPU) = 18 CPUs fit a quota of 18, and a fifth does not."""
    config = make_config(
        kubernetes={"managerNamespace": "tight-manager", "jobNamespace": "tight-jobs", "jobQuota": TIGHT_QUOTA},
        runner={"scope": {"type": "project_type", "projectId": 1}, "concurrent": 4},
    )
    run = run_program(config)
    deploy_namespaces(cluster, run)
    kube = runner_kube(run)
    for index in range(4):
        cluster.create(job_pod(kube, f"job-{index}"))
    message = rejected(lambda: cluster.create(job_pod(kube, "job-over")))
    assert "exceeded quota" in message and "limits.cpu" in message


def test_unconfined_profiles_only_pass_in_the_acknowledged_privileged_namespace(cluster: LocalCluster) -> None:
    runner = {"scope": {"type": "project_type", "projectId": 1}, "jobSecurityMode": "unconfined", "acknowledgeUnconfined": True}
    run = run_program(make_config(kubernetes={"managerNamespace": "unc-manager", "jobNamespace": "unc-jobs"}, runner=runner))
    deploy_namespaces(cluster, run)
    kube = runner_kube(run)
    created = cluster.create(job_pod(kube, "unconfined-job"))
    build = next(c for c in created["spec"]["containers"] if c["name"] == "build")
    assert build["securityContext"]["seccompProfile"] == {"type": "Unconfined"}
    # the same pod in a namespace at PSA baseline (the default job security mode) is refused
    cluster.create(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "plain-jobs", "labels": {"pod-security.kubernetes.io/enforce": "baseline"}},
        }
    )
    cluster.create({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": kube["service_account"], "namespace": "plain-jobs"}})
    message = rejected(lambda: cluster.create(job_pod({**kube, "namespace": "plain-jobs"}, "unconfined-job")))
    assert 'violates PodSecurity "baseline:latest"' in message and "seccompProfile" in message


def test_confined_profiles_are_admitted_at_baseline_on_the_build_container_only(cluster: LocalCluster) -> None:
    """The confined mode's job pod as the executor builds it: PSA baseline admits the Localhost profiles, which
    the apiserver keeps on the build container only; a profile path the config refuses, the apiserver refuses too."""
    runner = {
        "scope": {"type": "project_type", "projectId": 1},
        "jobSecurityMode": "confined",
        "nodeOs": "ubuntu-24.04",
        "nodeSelector": {"kubernetes.io/arch": "amd64"},
        "confinedProfiles": {"seccomp": "acme/build.kit-v1.json", "appArmor": "acme_build.kit-v1"},
    }
    run = run_program(make_config(kubernetes={"managerNamespace": "conf-manager", "jobNamespace": "conf-jobs"}, runner=runner))
    deploy_namespaces(cluster, run)
    namespace = cluster.get({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "conf-jobs"}})
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "baseline"
    kube = runner_kube(run)
    created = cluster.create(job_pod(kube, "confined-job"))
    contexts = {c["name"]: c.get("securityContext", {}) for c in [*created["spec"]["initContainers"], *created["spec"]["containers"]]}
    assert contexts["build"]["seccompProfile"] == {"type": "Localhost", "localhostProfile": "acme/build.kit-v1.json"}
    assert contexts["build"]["appArmorProfile"] == {"type": "Localhost", "localhostProfile": "acme_build.kit-v1"}
    for name in ("helper", "init-permissions"):
        assert "seccompProfile" not in contexts[name] and "appArmorProfile" not in contexts[name], name
    assert "seccompProfile" not in (created["spec"].get("securityContext") or {})
    # the apiserver's own rule for Localhost seccomp paths (no absolute path, no '..'), which the config restates
    for bad in ("../escape.json", "/var/lib/kubelet/seccomp/x.json"):
        pod = job_pod(kube, f"bad-{len(bad)}")
        build = next(c for c in pod["spec"]["containers"] if c["name"] == "build")
        build["securityContext"]["seccompProfile"]["localhostProfile"] = bad
        assert "localhostProfile" in rejected(lambda pod=pod: cluster.create(pod))
