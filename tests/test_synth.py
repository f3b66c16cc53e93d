"""Offline synth: every stack in the repo synthesises clean; deliberately broken states fail with a pointer."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import make_config

from verify.harness import ROOT, ProgramRun
from verify.policy_client import PolicyPack
from verify.synth import stacks_in_repo, synth_stack

pytestmark = pytest.mark.xdist_group("policy-pack")


def test_repo_has_the_three_environments_and_the_demo_stack() -> None:
    assert stacks_in_repo() == ["dev", "local", "prod", "staging"]


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_every_stack_synthesises_clean(pack: PolicyPack, stack: str, tmp_path: Path) -> None:
    report = synth_stack(stack, pack=pack, build_dir=tmp_path)
    assert report.failures == []
    out = tmp_path / stack
    resources = json.loads((out / "resources.json").read_text())
    assert len(resources) == report.summary["resources"]
    assert {"type", "name", "urn", "parent", "inputs"} <= set(resources[0])
    # Secrets are redacted in every artifact.
    secret = next(r for r in resources if r["type"] == "kubernetes:core/v1:Secret")
    assert secret["inputs"]["stringData"] == "[secret]"
    everything = "".join(p.read_text() for p in out.rglob("*") if p.is_file())
    assert "glrt-mock" not in everything and "mockSecretAccessKey" not in everything
    variables = json.loads((out / "ci-variables.json").read_text())
    assert {v["key"] for v in variables} >= {"ECR_REGISTRY", "BUILDKIT_CACHE_REPOSITORY", "AWS_DEFAULT_REGION"}
    for v in variables:
        if v["key"] == "AWS_SECRET_ACCESS_KEY":
            assert v["value"] == "[secret]" and v["masked"] and v["protected"] and v["hidden"]
    chart_files = sorted(p.name for p in (out / "k8s" / "chart").iterdir())
    assert chart_files == ["configmap-gitlab-runner-gitlab-runner.yaml", "deployment-gitlab-runner-gitlab-runner.yaml"]
    assert (out / "runner" / "config.toml").read_text().count("[[runners]]") == 1
    assert list((out / "iam").glob("*.json")) and list((out / "ecr").glob("lifecycle-*.json"))
    assert json.loads((out / "policy-report.json").read_text()) == []
    for manifest in (out / "k8s").glob("*.yaml"):
        assert yaml.safe_load(manifest.read_text())["apiVersion"]


def release(run: ProgramRun):
    return run.one("kubernetes:helm.sh/v3:Release").raw_inputs


def privileged_runner(run: ProgramRun) -> None:
    values = release(run)["values"]
    values["runners"]["config"] = values["runners"]["config"].replace("privileged = false", "privileged = true", 1)


def wildcard_iam(run: ProgramRun) -> None:
    policy = run.one("aws:iam/policy:Policy", "push-acme-web-policy").raw_inputs
    policy["policy"] = policy["policy"].replace('"ecr:PutImage"', '"ecr:*"')


def invalid_k8s_field(run: ProgramRun) -> None:
    run.one("kubernetes:core/v1:Namespace", "runner-jobs").raw_inputs["metadata"]["labelz"] = {"a": "b"}


def broken_lifecycle(run: ProgramRun) -> None:
    lifecycle = run.one("aws:ecr/lifecyclePolicy:LifecyclePolicy", "ecr-web").raw_inputs
    doc = json.loads(lifecycle["policy"])
    doc["rules"][1]["rulePriority"] = 1
    lifecycle["policy"] = json.dumps(doc)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (privileged_runner, ["[policy gitlab-runner-privileged] runners[0].kubernetes.privileged = true"]),
        (
            wildcard_iam,
            [
                "[iam-policy_sentry] push-acme-web-policy: Statement[1]: ecr:* is not a known IAM action",
                "[policy aws-iam-no-wildcard-actions] Statement[1] allows wildcard action 'ecr:*'",
            ],
        ),
        (
            invalid_k8s_field,
            [
                "[kubernetes-schema] namespace-cluster-gitlab-runner-jobs.yaml: metadata: Additional properties are not allowed ('labelz' was unexpected)"
            ],
        ),
        (broken_lifecycle, ["[ecr-lifecycle] web: rulePriority values must be unique, duplicated: [1]"]),
    ],
    ids=["privileged-runner", "wildcard-iam-action", "invalid-kubernetes-field", "duplicate-lifecycle-priority"],
)
def test_broken_state_fails_with_a_pointer(pack: PolicyPack, tmp_path: Path, mutate, expected: list[str]) -> None:
    report = synth_stack("dev", config=make_config(), pack=pack, build_dir=tmp_path, mutate=mutate)
    for fragment in expected:
        assert any(f.startswith(fragment) for f in report.failures), report.failures


def test_parliament_failure_is_reported(pack: PolicyPack, tmp_path: Path) -> None:
    def allow_everything(run: ProgramRun) -> None:
        run.one("aws:iam/policy:Policy", "push-acme-web-policy").raw_inputs["policy"] = json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
        )

    report = synth_stack("dev", config=make_config(), pack=pack, build_dir=tmp_path, mutate=allow_everything)
    assert any(f.startswith("[iam-parliament] push-acme-web-policy:") for f in report.failures), report.failures


def test_invalid_config_fails_before_anything_else(pack: PolicyPack, tmp_path: Path) -> None:
    report = synth_stack(
        "dev",
        config=make_config(runner={"scope": {"type": "project_type", "projectId": 1}, "concurrent": -1}),
        pack=pack,
        build_dir=tmp_path,
    )
    assert report.failures == ["[config] gitlab-buildkit-runner:runner.concurrent = -1: Input should be greater than or equal to 1"]
    assert not (tmp_path / "dev" / "resources.json").exists()


def test_synth_counts_each_config_problem_and_checks_the_stack_name(pack: PolicyPack, tmp_path: Path) -> None:
    # Regression: three problems were reported as "1 problem(s) ()", and a dev file declaring prod got
    # prod's rules instead of the mismatch.
    config = make_config(runner={"scope": {"type": "project_type", "projectId": 1}, "concurrent": "4", "runUntagged": 1})
    config["gitlab"] = {**config["gitlab"], "protectVariables": "no"}
    report = synth_stack("dev", config=config, pack=pack, build_dir=tmp_path)
    assert sorted(f.split(" = ")[0] for f in report.failures) == [
        "[config] gitlab-buildkit-runner:gitlab.protectVariables",
        "[config] gitlab-buildkit-runner:runner.concurrent",
        "[config] gitlab-buildkit-runner:runner.runUntagged",
    ]
    report = synth_stack("dev", config=make_config(environment="prod"), pack=pack, build_dir=tmp_path / "2")
    assert len(report.failures) == 1 and "stack 'dev' must declare environment 'dev'" in report.failures[0]


def test_cli_exit_status_and_readable_report(tmp_path: Path) -> None:
    broken = tmp_path / "Pulumi.broken.yaml"
    data = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())
    data["config"]["gitlab-buildkit-runner:registry"]["applications"] = [
        {"name": "web", "projectPath": "acme/web"},
        {"name": "Web", "projectPath": "acme/web"},
    ]
    broken.write_text(yaml.safe_dump(data))
    result = subprocess.run(
        [sys.executable, "-m", "verify.synth", "--stack", "dev", "--config-file", str(broken), "--build-dir", str(tmp_path / "build")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAILED dev: 1 problem\n" in result.stdout  # no empty "()" summary
    assert 'gitlab-buildkit-runner:registry.applications.1.name = "Web": must be an ECR repository name' in result.stdout
    assert "== total" in result.stdout


def test_synth_renders_the_configured_chart_version_or_refuses(pack: PolicyPack, tmp_path: Path) -> None:
    """Regression: synth rendered a hard-coded 0.86.0 whatever runner.chartVersion said, and reported OK."""
    config = make_config(runner={"scope": {"type": "project_type", "projectId": 1}, "chartVersion": "0.99.0"})
    report = synth_stack("dev", config=config, pack=pack, build_dir=tmp_path)
    chart_failures = [f for f in report.failures if f.startswith("[chart]")]
    assert len(chart_failures) == 1
    assert "cannot render chart version '0.99.0'" in chart_failures[0]
    assert "no pinned sha256" in chart_failures[0] and "known: 0.86.0" in chart_failures[0]
    assert not (tmp_path / "dev" / "k8s" / "chart").exists()  # nothing was rendered in its place
