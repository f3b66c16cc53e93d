"""The real gitlab-runner chart (0.86.0) rendered offline with the values the stack produces."""

from __future__ import annotations

import copy
import sys
import tomllib
from pathlib import Path

import helm_python
import pytest
from conftest import make_config, runner_config_of

from verify.chart import ChartUnavailable, RenderedChart, chart_path, render_chart, render_release
from verify.harness import ProgramRun, run_program, run_stack

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "policies"))
import pod_security_controls

try:
    from components.config import RunnerConfig

    DEFAULT_CHART_VERSION = RunnerConfig.model_fields["chart_version"].default
    chart_path(DEFAULT_CHART_VERSION)
except ChartUnavailable as exc:  # a user's clone without ../shared and without network
    pytest.skip(f"gitlab-runner chart not available: {exc}", allow_module_level=True)


def rendered(run: ProgramRun) -> RenderedChart:
    return render_release(run.one("kubernetes:helm.sh/v3:Release").inputs)


@pytest.fixture(scope="module", params=["dev", "staging", "prod"])
def stack_run(request: pytest.FixtureRequest) -> ProgramRun:
    return run_stack(request.param)


def test_deployment_uses_our_service_account_and_secret(stack_run: ProgramRun) -> None:
    chart = rendered(stack_run)
    (deployment,) = chart.of_kind("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "gitlab-runner-manager"
    projected = next(v for v in pod["volumes"] if v["name"] == "projected-secrets")
    (source,) = projected["projected"]["sources"]
    assert source["secret"]["name"] == "gitlab-runner-token"
    assert {i["key"] for i in source["secret"]["items"]} == {"runner-token", "runner-registration-token"}
    # Our Secret carries both keys the Deployment mounts.
    secret = stack_run.one("kubernetes:core/v1:Secret").inputs
    assert set(secret["stringData"]) == {"runner-token", "runner-registration-token"}


def test_manager_pod_passes_pod_security_restricted(stack_run: ProgramRun) -> None:
    (deployment,) = rendered(stack_run).of_kind("Deployment")
    template = deployment["spec"]["template"]
    assert pod_security_controls.violations(template["spec"], template["metadata"], "restricted") == {}


def test_the_manager_rolls_out_one_at_a_time(stack_run: ProgramRun) -> None:
    # Regression: the chart renders no strategy, and the default RollingUpdate ran the draining manager
    # beside the new one (two managers' jobs against a quota for one).
    (deployment,) = rendered(stack_run).of_kind("Deployment")
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}


def test_psa_checker_is_not_a_rubber_stamp(stack_run: ProgramRun) -> None:
    """The same check on the chart's own default security context (no seccomp) fails."""
    values = copy.deepcopy(stack_run.one("kubernetes:helm.sh/v3:Release").inputs["values"])
    del values["securityContext"]["seccompProfile"]
    del values["podSecurityContext"]["seccompProfile"]
    chart = render_chart(values, release="gitlab-runner", namespace="gitlab-runner", version=DEFAULT_CHART_VERSION)
    (deployment,) = chart.of_kind("Deployment")
    found = pod_security_controls.violations(deployment["spec"]["template"]["spec"], deployment["spec"]["template"]["metadata"])
    assert list(found) == ["kubernetes-pod-seccomp-restricted"]


def test_chart_renders_no_rbac_and_no_service_account(stack_run: ProgramRun) -> None:
    kinds = sorted(o["kind"] for o in rendered(stack_run).objects)
    assert kinds == ["ConfigMap", "Deployment"]


def test_chart_with_its_own_rbac_would_grant_wildcards() -> None:
    """Why rbac.create stays false: the chart's Role with empty rules is '*' on all core resources."""
    run = run_stack("dev")
    values = copy.deepcopy(run.one("kubernetes:helm.sh/v3:Release").inputs["values"])
    values["rbac"] = {"create": True}
    (role,) = render_chart(values, release="gitlab-runner", namespace="gitlab-runner", version=DEFAULT_CHART_VERSION).of_kind("Role")
    assert any("*" in rule.get("verbs", []) for rule in role["rules"])


def test_rendered_config_equals_the_typed_model(stack_run: ProgramRun) -> None:
    from components.config import parse_config
    from components.runner_config import render_toml
    from verify.harness import load_stack_file

    cfg = parse_config(load_stack_file(stack_run.stack))
    job_account = stack_run.one("kubernetes:core/v1:ServiceAccount", "runner-job").inputs["metadata"]["name"]
    expected = tomllib.loads(render_toml(runner_config_of(cfg, job_account)))
    chart = rendered(stack_run)
    assert tomllib.loads(chart.config_template_toml()) == expected
    head = tomllib.loads(chart.global_config_toml())
    assert head["concurrent"] == cfg.runner.concurrent
    assert head["check_interval"] == cfg.runner.check_interval_seconds
    assert head["listen_address"] == ":9252"  # metrics on by default


def test_template_braces_survive_the_charts_tpl() -> None:
    """Config validation keeps braces out today; the escaping is what makes any future string safe."""
    from components.helm_values import escape_for_tpl

    run = run_stack("dev")
    values = copy.deepcopy(run.one("kubernetes:helm.sh/v3:Release").inputs["values"])
    toml_text = 'concurrent_note = "{{ .Release.Name }} and {{ not-a-template"\n'
    values["runners"]["config"] = escape_for_tpl(toml_text)
    chart = render_chart(values, release="gitlab-runner", namespace="gitlab-runner", version=DEFAULT_CHART_VERSION)
    assert tomllib.loads(chart.config_template_toml()) == {"concurrent_note": "{{ .Release.Name }} and {{ not-a-template"}
    # Unescaped, the chart's tpl would evaluate (or choke on) the braces.
    values["runners"]["config"] = toml_text
    with pytest.raises(helm_python.HelmError, match=r"not-a-template|function|parse"):
        render_chart(values, release="gitlab-runner", namespace="gitlab-runner", version=DEFAULT_CHART_VERSION)


def test_unconfined_mode_reaches_the_rendered_config() -> None:
    run = run_program(
        make_config(
            runner={"scope": {"type": "project_type", "projectId": 1}, "jobSecurityMode": "unconfined", "acknowledgeUnconfined": True}
        )
    )
    kube = tomllib.loads(rendered(run).config_template_toml())["runners"][0]["kubernetes"]
    assert kube["pod_annotations"]["container.apparmor.security.beta.kubernetes.io/build"] == "unconfined"
    assert "Unconfined" in kube["pod_spec"][0]["patch"]


def test_graceful_shutdown_replaces_the_unregister_hook(stack_run: ProgramRun) -> None:
    (deployment,) = rendered(stack_run).of_kind("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["lifecycle"]["preStop"]["exec"]["command"][:2] == ["/bin/bash", "-c"]
    assert "kill -QUIT 1" in container["lifecycle"]["preStop"]["exec"]["command"][2]
    assert "unregister" not in str(container["lifecycle"])
    values = stack_run.one("kubernetes:helm.sh/v3:Release").inputs["values"]
    assert pod["terminationGracePeriodSeconds"] == values["terminationGracePeriodSeconds"]
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["gitlab-buildkit-runner/runner-id"] == "4242"
    assert annotations["prometheus.io/scrape"] == "true"


def test_rendered_objects_pass_strict_schema_validation(stack_run: ProgramRun) -> None:
    import kubernetes_validate

    for obj in rendered(stack_run).objects:
        kubernetes_validate.validate(obj, "1.33.0", strict=True)


def test_concurrent_job_pods_fit_the_quota_as_rendered(stack_run: ProgramRun) -> None:
    """Cross-check of the config rule against what the runner will read: each job pod counts its build
    and helper limits (init-permissions takes the helper's), and `concurrent` of them fit the quota."""
    from components.config import parse_quantity

    chart = rendered(stack_run)
    kube = tomllib.loads(chart.config_template_toml())["runners"][0]["kubernetes"]
    concurrent = tomllib.loads(chart.global_config_toml())["concurrent"]
    quotas = stack_run.of_type("kubernetes:core/v1:ResourceQuota")
    if not quotas:
        pytest.skip(f"{stack_run.stack} sets no job quota")
    hard = quotas[0].inputs["spec"]["hard"]
    assert int(hard["pods"]) >= concurrent
    for resource, key in (("cpu", "cpu_limit"), ("memory", "memory_limit"), ("ephemeral-storage", "ephemeral_storage_limit")):
        pod = parse_quantity(kube[key]) + parse_quantity(kube[f"helper_{key}"])
        assert pod * concurrent <= parse_quantity(hard[f"limits.{resource}"]), resource
