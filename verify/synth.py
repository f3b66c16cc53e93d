"""Offline synth: the whole desired state of a stack, written to build/<stack>/ and checked.

    python -m verify.synth --stack dev          # or: make synth STACK=dev
    python -m verify.synth --stack all
    python -m verify.synth --config-file my.yaml --stack dev

Runs the real program under Pulumi's mocks with the stack's config, renders the pinned chart with the
generated values, and checks everything with real validators: kubernetes-validate --strict, the
policy pack over its gRPC protocol, policy_sentry + parliament, the lifecycle validator, and the
rendered config.toml against the typed model. Exit status 1 when any check fails.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from components.aws_documents import validate_lifecycle
from components.config import ConfigError, parse_config
from components.runner_config import build_runner_config, render_toml

from .chart import ChartUnavailable, render_release
from .harness import PROJECT, ROOT, ProgramRun, Registration, StackFileError, load_config_file, load_stack_file, run_program
from .iam_checks import parliament_problems, sentry_problems
from .policy_client import PolicyPack, ResourceInput

DEFAULT_K8S_VERSION = "1.33.0"
CORE_GROUPS = {"v1": "core/v1"}
Mutation = Callable[[ProgramRun], None]


@dataclass
class Report:
    stack: str
    out: Path
    failures: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    def fail(self, check: str, message: str) -> None:
        self.failures.append(f"[{check}] {message}")


@contextmanager
def step(name: str) -> Iterator[None]:
    started = time.perf_counter()
    print(f"  .. {name}", flush=True)
    yield
    print(f"     done in {time.perf_counter() - started:.2f}s", flush=True)


def type_token(obj: dict[str, Any]) -> str:
    """Pulumi type token of a manifest: apps/v1 Deployment -> kubernetes:apps/v1:Deployment."""
    api = str(obj.get("apiVersion"))
    return f"kubernetes:{CORE_GROUPS.get(api, api)}:{obj.get('kind')}"


def manifest_of(reg: Registration) -> dict[str, Any]:
    return {k: v for k, v in reg.inputs.items() if v is not None}


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _yaml_name(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{obj.get('kind', 'Object').lower()}-{meta.get('namespace', 'cluster')}-{meta.get('name', 'unnamed')}.yaml"


def synth_stack(
    stack: str,
    *,
    config: dict[str, Any] | None = None,
    pack: PolicyPack,
    build_dir: Path = ROOT / "build",
    k8s_version: str = DEFAULT_K8S_VERSION,
    mutate: Mutation | None = None,
) -> Report:
    out = build_dir / stack
    report = Report(stack, out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    try:
        raw = config if config is not None else load_stack_file(stack)
    except StackFileError as exc:
        report.fail("stack-file", str(exc))
        return report

    with step("run the program under Pulumi mocks"):
        try:
            cfg = parse_config(raw, stack=stack)
            run = run_program(raw, stack=stack)
        except ConfigError as exc:
            for problem in exc.problems:
                report.fail("config", problem)
            return report
        if mutate:
            mutate(run)
        resources = [r for r in run.resources if r.custom]
        _write(
            out / "resources.json",
            json.dumps(
                [
                    {"type": r.type, "name": r.name, "urn": r.urn, "parent": r.parent, "protect": r.protect, "inputs": r.redacted_inputs}
                    for r in run.resources
                ],
                indent=2,
                sort_keys=True,
            ),
        )
        report.summary["resources"] = len(run.resources)

    with step("write Kubernetes objects and render the gitlab-runner chart"):
        ours = [manifest_of(r) for r in resources if r.type.startswith("kubernetes:") and r.type != "kubernetes:helm.sh/v3:Release"]
        for obj in ours:
            redacted = {**obj, "stringData": {k: "[secret]" for k in obj["stringData"]}} if "stringData" in obj else obj
            _write(out / "k8s" / _yaml_name(obj), yaml.safe_dump(redacted, sort_keys=False))
        chart_objects: list[dict[str, Any]] = []
        releases = [r for r in resources if r.type == "kubernetes:helm.sh/v3:Release"]
        for release in releases:
            try:
                rendered = render_release(release.inputs)
            except ChartUnavailable as exc:
                report.fail("chart", f"{release.name}: cannot render chart version {release.inputs.get('version')!r}: {exc}")
                continue
            chart_objects += rendered.objects
            for obj in rendered.objects:
                _write(out / "k8s" / "chart" / _yaml_name(obj), yaml.safe_dump(obj, sort_keys=False))
            runner_toml = rendered.global_config_toml() + "\n" + rendered.config_template_toml()
            _write(out / "runner" / "config.toml", runner_toml)
            # The job service account as the program created it (RunnerRbac's account in the job namespace).
            job_account = next(
                r.inputs["metadata"]["name"]
                for r in resources
                if r.type == "kubernetes:core/v1:ServiceAccount" and r.inputs["metadata"]["namespace"] == cfg.kubernetes.job_namespace
            )
            model = build_runner_config(
                cfg.runner,
                environment=cfg.environment,
                job_namespace=cfg.kubernetes.job_namespace,
                job_service_account=job_account,
                automount_service_account_token=cfg.kubernetes.job_automount_service_account_token,
            )
            expected = tomllib.loads(render_toml(model))
            try:
                actual = tomllib.loads(rendered.config_template_toml())
            except tomllib.TOMLDecodeError as exc:
                report.fail("runner-config", f"the chart rendered config.template.toml that is not TOML: {exc}")
            else:
                if actual != expected:
                    report.fail("runner-config", "config.toml rendered by the chart differs from the typed model (see runner/config.toml)")
        report.summary["kubernetes_objects"] = len(ours)
        report.summary["chart_objects"] = len(chart_objects)

    with step(f"validate Kubernetes documents (kubernetes-validate --strict, {k8s_version})"):
        import kubernetes_validate

        for obj in [*ours, *chart_objects]:
            try:
                kubernetes_validate.validate(obj, k8s_version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                path = ".".join(str(p) for p in exc.path)
                report.fail("kubernetes-schema", f"{_yaml_name(obj)}: {path}: {exc.message}")
            except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as exc:
                report.fail("kubernetes-schema", f"{_yaml_name(obj)}: {exc}")

    with step("IAM documents (policy_sentry, parliament) and ECR lifecycle/repository policies"):
        for r in resources:
            if r.type == "aws:iam/policy:Policy":
                doc = json.loads(r.inputs["policy"])
                _write(out / "iam" / f"{r.name}.json", json.dumps(doc, indent=2))
                for problem in sentry_problems(doc):
                    report.fail("iam-policy_sentry", f"{r.name}: {problem}")
                for problem in parliament_problems(doc):
                    report.fail("iam-parliament", f"{r.name}: {problem}")
            elif r.type == "aws:iam/role:Role":
                doc = json.loads(r.inputs["assumeRolePolicy"])
                # Trust policies are checked by the pack (aws-iam-oidc-trust-sub) and the builder tests:
                # parliament lints identity policies and reports every trust policy as malformed.
                _write(out / "iam" / f"{r.name}-trust.json", json.dumps(doc, indent=2))
            elif r.type == "aws:ecr/lifecyclePolicy:LifecyclePolicy":
                doc = json.loads(r.inputs["policy"])
                _write(out / "ecr" / f"lifecycle-{r.name}.json", json.dumps(doc, indent=2))
                for problem in validate_lifecycle(doc):
                    report.fail("ecr-lifecycle", f"{r.inputs['repository']}: {problem}")
            elif r.type == "aws:ecr/repositoryPolicy:RepositoryPolicy":
                _write(out / "ecr" / f"repository-policy-{r.name}.json", json.dumps(json.loads(r.inputs["policy"]), indent=2))

    with step("CI/CD variables"):
        variables = []
        for r in resources:
            if r.type in ("gitlab:index/projectVariable:ProjectVariable", "gitlab:index/groupVariable:GroupVariable"):
                inputs = r.redacted_inputs
                variables.append(
                    {
                        "key": inputs["key"],
                        "target": inputs.get("project") or inputs.get("group"),
                        "environment_scope": inputs.get("environmentScope"),
                        "masked": inputs.get("masked", False),
                        "protected": inputs.get("protected", False),
                        "hidden": inputs.get("hidden", False),
                        "value": inputs["value"],
                    }
                )
        _write(out / "ci-variables.json", json.dumps(sorted(variables, key=lambda v: v["key"]), indent=2))
        report.summary["ci_variables"] = len(variables)

    with step("policy pack over gRPC (every resource and every rendered chart object)"):
        # Each resource goes with its provider's inputs, as the CLI sends them (a Kubernetes provider's
        # default namespace decides where a NetworkPolicy without one lands).
        providers = {r.urn: r for r in run.resources if r.type.startswith("pulumi:providers:")}
        to_check = []
        for r in resources:
            provider = providers.get(r.provider.rsplit("::", 1)[0]) if r.provider else None
            to_check.append(
                ResourceInput(r.type, r.name, r.urn, r.inputs, provider.inputs if provider else None, provider.type if provider else "")
            )
        for obj in chart_objects:
            typ, name = type_token(obj), (obj.get("metadata") or {}).get("name", "chart")
            to_check.append(ResourceInput(typ, f"chart-{name}", f"urn:pulumi:{stack}::{PROJECT}::{typ}::chart-{name}", obj))
        diagnostics = pack.analyze_all(to_check)
        # The chart's own objects are what the release renders: the release is the one place the runner
        # and its config may come from, so the rule against runners outside it does not apply to them.
        chart_urns = {item.urn for item in to_check[len(resources) :]}
        diagnostics = [d for d in diagnostics if not (d.policy == "gitlab-runner-only-through-the-release" and d.urn in chart_urns)]
        _write(out / "policy-report.json", json.dumps([d.as_dict() for d in diagnostics], indent=2))
        mandatory = [d for d in diagnostics if d.level == "mandatory"]
        for d in mandatory:
            report.fail(f"policy {d.policy}", d.message.splitlines()[-1] + (f" ({d.urn.split('::')[-1]})" if d.urn else ""))
        report.summary["policy_mandatory"] = len(mandatory)
        report.summary["policy_advisory"] = len([d for d in diagnostics if d.level == "advisory"])
    return report


def stacks_in_repo() -> list[str]:
    return sorted(p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in ROOT.glob("Pulumi.*.yaml"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", required=True, help="stack name, or 'all' for every Pulumi.<stack>.yaml")
    parser.add_argument("--config-file", type=Path, help="use this Pulumi.<stack>.yaml-shaped file instead of the stack's")
    parser.add_argument(
        "--kubernetes-version", default=DEFAULT_K8S_VERSION, help=f"schema version to validate against (default {DEFAULT_K8S_VERSION})"
    )
    parser.add_argument("--build-dir", type=Path, default=ROOT / "build")
    args = parser.parse_args(argv)

    stacks = stacks_in_repo() if args.stack == "all" else [args.stack]
    started = time.perf_counter()
    failed = False
    with PolicyPack() as pack:
        for stack in stacks:
            print(f"== synth {stack}", flush=True)
            config = None
            if args.config_file:
                try:
                    config = load_config_file(args.config_file)
                except StackFileError as exc:
                    print(f"  FAILED {stack}: {exc}")
                    return 2
            elif not (ROOT / f"Pulumi.{stack}.yaml").exists():
                print(f"  no Pulumi.{stack}.yaml; stacks in this repo: {', '.join(stacks_in_repo())}")
                return 2
            report = synth_stack(stack, config=config, pack=pack, build_dir=args.build_dir, k8s_version=args.kubernetes_version)
            summary = ", ".join(f"{k}={v}" for k, v in report.summary.items())
            if report.failures:
                failed = True
                count = f"{len(report.failures)} problem{'s' if len(report.failures) != 1 else ''}"
                print(f"  FAILED {stack}: {count}{f' ({summary})' if summary else ''}")
                for failure in report.failures:
                    print(f"    - {failure}")
            else:
                print(
                    f"  OK {stack}: {summary}; written to {report.out.relative_to(ROOT) if report.out.is_relative_to(ROOT) else report.out}"
                )
    print(f"== total {time.perf_counter() - started:.2f}s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
