"""Who gets which credential, for every kind of pipeline: .gitlab-ci.yml and the build template run
through gitlab-ci-local (GitLab's CI semantics, not ours), plus the documented GitLab and STS rules
gitlab-ci-local does not model (verify/pipeline.py says which). One worker computes the matrix."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from cicd.job_env_guard import problems
from cicd.pipeline_variables import TOOL_VARIABLES, infra_variables
from verify import pipeline as p
from verify.template import InputRejected, included_jobs

pytestmark = pytest.mark.xdist_group("pipeline-semantics")
FIXTURES = Path(__file__).parent / "fixtures" / "pipeline"
UNTRUSTED = ("mr", "mr-fork", "push-unprotected", "tag-unprotected")


@pytest.fixture(scope="module")
def infra() -> list[p.Row]:
    return p.infra_rows()


@pytest.fixture(scope="module")
def template() -> list[p.Row]:
    return p.template_rows()


def _rows(rows: list[p.Row], kind: str, job_prefix: str = "") -> list[p.Row]:
    return [r for r in rows if r.kind.key == kind and r.job.startswith(job_prefix)]


# --- what the matrix must hold --------------------------------------------------------------------------


def test_no_read_only_job_reaches_a_deploy_credential(infra: list[p.Row]) -> None:
    read_only = [r for r in infra if r.job.startswith(p.READ_ONLY_JOBS)]
    assert {r.job.split(":")[0] for r in read_only} >= {"lint", "test", "synth", "desired-state-diff", "preview"}
    for r in read_only:
        leaked = [c for c in r.credentials if c.startswith(p.DEPLOY_CREDENTIALS)]
        assert not leaked, f"{r.kind.title}: read-only job {r.job} can reach {leaked}"


@pytest.mark.parametrize("kind", UNTRUSTED)
def test_merge_request_and_unprotected_pipelines_reach_no_protected_credential(
    kind: str, infra: list[p.Row], template: list[p.Row]
) -> None:
    for r in _rows(infra, kind) + _rows(template, kind):
        assert r.credentials == [], f"{r.pipeline} {r.kind.title}: {r.job} reaches {r.credentials}"


def test_previews_get_exactly_the_read_only_identity(infra: list[p.Row]) -> None:
    previews = _rows(infra, "push-protected", "preview")
    assert len(previews) == 3
    for r in previews:
        assert r.environment and r.environment.startswith("preview/")
        # the preview role is *trusted* (not just named): its trust covers the refs the job runs on
        assert r.credentials == ["GitLab read token", "MR note token", "preview kubeconfig", "preview role", "state passphrase"], r


def test_deploy_and_drift_get_the_deploy_identity(infra: list[p.Row]) -> None:
    for kind, prefix in (("push-default", "deploy:"), ("schedule", "drift"), ("manual", "deploy:")):
        rows = _rows(infra, kind, prefix)
        assert len(rows) == 3, (kind, [r.job for r in rows])
        for r in rows:
            assert set(p.DEPLOY_CREDENTIALS) <= set(r.credentials), r
            assert not any(c.startswith("preview") for c in r.credentials), r


@pytest.mark.parametrize("kind", ["push-default", "tag-protected", "schedule"])
def test_builds_of_protected_refs_can_push_in_every_environment(kind: str, template: list[p.Row]) -> None:
    rows = _rows(template, kind, "build-image-")
    assert {r.pipeline for r in rows} == {f"template ({e})" for e in p.STACKS.values()} | {"template (dev, warm builders)"}
    for r in rows:
        expected = (["push keys", "warm daemon client certificate"],) if "warm" in r.pipeline else (["push keys"], ["push role"])
        assert r.credentials in expected, f"{r.pipeline} {r.kind.title}: {r.credentials}"


def test_a_release_tag_build_outside_dev_assumes_its_role(template: list[p.Row]) -> None:
    """Defect 3: staging (oidc) trusted only main, so every protected-tag build was refused by STS."""
    (staging,) = [r for r in _rows(template, "tag-protected") if r.pipeline == "template (staging)"]
    assert staging.credentials == ["push role"], staging
    assert staging.subject == f"project_path:{p.APP}:ref_type:tag:ref:v1.4.0"


def test_a_build_lands_only_on_its_own_environments_runner(template: list[p.Row]) -> None:
    jobs = [r for r in template if r.job.startswith("build-image-")]
    assert jobs
    for r in jobs:
        stack = next(s for s, e in p.STACKS.items() if r.pipeline in (f"template ({e})", f"template ({e}, warm builders)"))
        assert r.runners == [stack], f"{r.pipeline} {r.kind.title}: runners {r.runners}"


def test_the_documented_matrix_is_the_evaluated_one(infra: list[p.Row], template: list[p.Row]) -> None:
    table = p.order_markdown(infra + template) + "\n" + p.markdown(infra) + "\n" + p.markdown(template)
    assert p.render_doc(p.DOC.read_text(), table) == p.DOC.read_text(), "docs/pipeline.md is stale: python -m verify.pipeline --write"


# --- the evaluator sees what it claims to see ---------------------------------------------------------


def test_the_evaluator_finds_the_old_preview_leak() -> None:
    """Defect 1, as shipped: the preview job (environment: $ENVIRONMENT) with KUBECONFIG: $PREVIEW_KUBECONFIG
    in its variables, and a protected project variable KUBECONFIG scoped dev. GitLab's precedence
    (project variable over job variable), as gitlab-ci-local applies it, hands it the deploy kubeconfig."""
    document = yaml.safe_load((FIXTURES / "v1-preview.yml").read_text())
    variables = [
        p.Variable("KUBECONFIG", "<deploy kubeconfig:dev>", "dev", True, True, "deploy kubeconfig"),
        p.Variable("PREVIEW_KUBECONFIG", "<preview kubeconfig:*>", "*", True, True, "preview kubeconfig"),
    ]
    pipeline = p.evaluate(document, p.KIND["push-protected"], p.INFRA, variables)
    job = pipeline.jobs["preview: [dev,dev]"]
    assert job.env["KUBECONFIG"] == "<deploy kubeconfig:dev>"
    assert p.credentials_of(job, variables, {}) == ["deploy kubeconfig", "preview kubeconfig"]


def test_the_protected_layer_changes_nothing_when_nothing_is_protected() -> None:
    """Our addition against gitlab-ci-local alone: with unprotected variables both give the same environments."""
    document = yaml.safe_load(p.PIPELINE.read_text())
    variables = [p.Variable(v.key, v.value, v.scope, False, v.file, v.credential) for v in p.infra_project_variables()]
    for kind in (p.KIND["push-protected"], p.KIND["push-default"]):
        ours = p.evaluate(document, kind, p.INFRA, variables)
        alone = p.evaluate(document, kind, p.INFRA, variables, protected_layer=False)
        assert set(ours.jobs) == set(alone.jobs)
        for name, job in ours.jobs.items():
            keys = {v.key for v in variables} | {"IDENTITY", "PULUMI_DEBUG_COMMANDS", "STACK", "ENVIRONMENT", "CI_ENVIRONMENT_NAME"}
            strip = lambda env: {k: v for k, v in env.items() if k in keys}  # noqa: E731
            assert strip(job.env), name
            assert strip(job.env) == strip(alone.jobs[name].env), name


def test_protected_variables_stop_at_unprotected_refs() -> None:
    document = {"stages": ["test"], "job": {"stage": "test", "environment": "dev", "script": ["true"]}}
    variables = [p.Variable("SECRET", "<s>", "dev", True), p.Variable("OPEN", "<o>", "dev", False)]
    unprotected = p.evaluate(document, p.KIND["push-unprotected"], p.INFRA, variables).jobs["job"].env
    protected = p.evaluate(document, p.KIND["push-protected"], p.INFRA, variables).jobs["job"].env
    assert (unprotected.get("SECRET"), unprotected.get("OPEN")) == (None, "<o>")
    assert (protected.get("SECRET"), protected.get("OPEN")) == ("<s>", "<o>")


def test_workflow_rules_decide_whether_a_pipeline_exists() -> None:
    """The `__workflow__` job is gitlab-ci-local's own rule engine on workflow:rules: it must agree with
    the same rules on a real job (which gitlab-ci-local does model)."""
    rules = yaml.safe_load(p.PIPELINE.read_text())["workflow"]["rules"]
    document = {"stages": ["test"], "workflow": {"rules": rules}, "probe": {"stage": "test", "rules": rules, "script": ["true"]}}
    for kind in p.KINDS:
        result = p.evaluate(document, kind, p.INFRA, [])
        assert result.created == ("probe" in result.jobs), kind.key
    assert not p.evaluate(document, p.KIND["push-unprotected"], p.INFRA, []).created


def test_id_token_subject_follows_gitlabs_documented_format() -> None:
    document = {"stages": ["test"], "job": {"stage": "test", "id_tokens": {"T": {"aud": "$CI_SERVER_URL"}}, "script": ["true"]}}
    tag = p.evaluate(document, p.KIND["tag-protected"], p.INFRA, []).jobs["job"]
    mr = p.evaluate(document, p.KIND["mr"], p.INFRA, []).jobs["job"]
    fork = p.evaluate(document, p.KIND["mr-fork"], p.INFRA, []).jobs["job"]
    # https://docs.gitlab.com/ci/secrets/id_token_authentication/#token-payload
    assert tag.id_token_subject() == f"project_path:{p.INFRA}:ref_type:tag:ref:v1.4.0"
    assert mr.id_token_subject() == f"project_path:{p.INFRA}:ref_type:branch:ref:feature/x"
    assert fork.id_token_subject() == "project_path:contributor/gitlab-buildkit-runner:ref_type:branch:ref:main"
    assert tag.id_tokens == {"T": p.SERVER}


def test_trust_evaluation_is_iams() -> None:
    policy = {
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {"gitlab.com:aud": p.SERVER},
                    "StringLike": {"gitlab.com:sub": "project_path:a/b:ref_type:tag:ref:v*"},
                },
            }
        ]
    }
    assert p.trusts(policy, "project_path:a/b:ref_type:tag:ref:v1.2/x", p.SERVER, "gitlab.com")  # IAM '*' crosses '/'
    assert not p.trusts(policy, "project_path:a/b:ref_type:branch:ref:v1", p.SERVER, "gitlab.com")
    assert not p.trusts(policy, "project_path:a/b:ref_type:tag:ref:v1", "https://other", "gitlab.com")
    unknown = {"Statement": [{**policy["Statement"][0], "Condition": {"ForAnyValue:StringLike": {"gitlab.com:sub": "*"}}}]}
    assert not p.trusts(unknown, "project_path:a/b:ref_type:tag:ref:v1", p.SERVER, "gitlab.com")  # fails closed


# --- bad input ------------------------------------------------------------------------------------------


def test_a_consumer_without_the_environment_input_is_refused() -> None:
    with pytest.raises(InputRejected, match="environment"):
        included_jobs(app="web")
    consumer = {"stages": ["build"], "include": [{"local": "templates/buildkit-build.yml", "inputs": {"app": "web"}}]}
    with pytest.raises(RuntimeError, match="environment"):
        p.evaluate(consumer, p.KIND["push-default"], p.APP, [], {"templates/buildkit-build.yml": p.TEMPLATE.read_text()})


def test_the_template_tags_jobs_with_their_environment() -> None:
    job = included_jobs(app="web", environment="production")["build-image-web"]
    assert job["tags"] == ["buildkit", "production"]


def test_a_tool_named_variable_stops_the_pulumi_jobs() -> None:
    """An old KUBECONFIG project variable (scope *) would reach the preview: the job's guard refuses to run."""
    document = yaml.safe_load(p.PIPELINE.read_text())
    variables = [*p.infra_project_variables(), p.Variable("KUBECONFIG", "<legacy>", "*", True, True, "deploy kubeconfig")]
    with pytest.raises(RuntimeError, match="the CI/CD variable KUBECONFIG reaches this job"):
        p.evaluate(document, p.KIND["push-protected"], p.INFRA, variables)


def test_the_guard_runs_first_in_every_pulumi_job() -> None:
    pulumi = yaml.safe_load(p.PIPELINE.read_text())[".pulumi"]
    assert pulumi["before_script"][0] == p.GUARD
    assert problems({"PATH": "/bin"}) == []
    assert [line.split(" reaches")[0] for line in problems({"GITLAB_TOKEN": "x", "AWS_PROFILE": "y"})] == [
        "ERROR: the CI/CD variable GITLAB_TOKEN",
        "ERROR: the CI/CD variable AWS_PROFILE",
    ]


def test_no_project_variable_carries_a_tool_name() -> None:
    assert not {v.key for v in infra_variables()} & set(TOOL_VARIABLES)


def test_the_guard_script_is_standard_library_only() -> None:
    result = subprocess.run(
        ["python3", "-I", "-c", "import sys; sys.path.insert(0, '.'); import cicd.job_env_guard"],
        cwd=p.ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_the_files_as_written_pass_gitlab_ci_locals_validation() -> None:
    """Found by the evaluator: `cache:key:files` listed three files, GitLab takes at most two. The evaluation
    copy drops caches, so each file is first parsed as written; this is that check failing on purpose."""
    document = yaml.safe_load(p.PIPELINE.read_text())
    assert len(document[".python"]["cache"]["key"]["files"]) <= 2
    document[".python"]["cache"]["key"]["files"] = ["requirements.txt", "requirements-dev.txt", "cicd/requirements.txt"]
    with pytest.raises(RuntimeError, match="cache:key:files should be an array of one or two file paths"):
        p.evaluate(document, p.KIND["mr"], p.INFRA, [])
