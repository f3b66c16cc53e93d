"""Who gets which credential: this repository's pipeline and the build template, evaluated by gitlab-ci-local.

For each kind of pipeline (KINDS) the pipeline file runs through gitlab-ci-local 4.73.0 (its rules,
`workflow:rules` through a job of their own, `extends`, `parallel:matrix`, `include` with `inputs`,
variable expansion, environment-scoped variables and their precedence over a job's `variables:`), in a
throw-away git repository whose remote names the project. Every job's scripts are replaced by a dump
of the environment the job's script would see (file-type variables read back); nothing else changes.
What gitlab-ci-local does not model is added here, each from GitLab's documentation or source (the
GitHub mirror gitlabhq/gitlabhq, at the commits named):

- protected variables reach only pipelines of protected branches and tags; merge-request pipelines
  run on refs/merge-requests/<iid>/head, not protected (the project setting that lets them read
  protected variables is assumed off, its default); a fork's merge request runs in the fork, without
  the parent project's variables ("By default, pipelines from forked projects can't access the CI/CD
  variables available to the parent project"); gitlab-ci-local passes every variable to every job:
  Ref: https://github.com/gitlabhq/gitlabhq/blob/017a6c129d6a9e4ad9fec792cd84f88641d7dbfe/doc/ci/variables/_index.md ("Protect variable", "For a project")
- `CI_COMMIT_REF_PROTECTED`, `CI_PIPELINE_SOURCE`, the tag and merge-request variables of the kind
  (gitlab-ci-local always says push, unprotected):
  Ref: https://github.com/gitlabhq/gitlabhq/blob/2f369bd95866b7f623387ce2b6acf646df3d5222/doc/ci/variables/predefined_variables.md
- whether a pipeline is created at all: `workflow:rules` (gitlab-ci-local evaluates them only for their
  variables), run by gitlab-ci-local's own rule engine as the rules of a job `__workflow__`
- ID tokens (gitlab-ci-local issues none): `sub` = project_path:<path>:ref_type:<branch|tag>:ref:<source
  ref> (a merge request's source branch in merge-request pipelines), `aud` as the job asks:
  Ref: https://github.com/gitlabhq/gitlabhq/blob/ba0f3164d55d31dedaebd6ebda6232beb2681c86/lib/gitlab/ci/jwt_v2.rb
- which runner may take a job: one whose tags include all of the job's tags (untagged jobs only on
  runners that run untagged jobs), and a protected runner only jobs of protected refs:
  Ref: https://docs.gitlab.com/ci/runners/configure_runners/#control-jobs-that-a-runner-can-run
- whether STS accepts a token for a role: the role's trust policy, StringEquals/StringLike on `aud`
  and `sub` (the claims an IAM trust policy can test for a GitLab provider; `ref_protected` is in the
  token but not a condition key); any other operator is refused (fail closed):
  Ref: https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_iam-condition-keys.html#condition-keys-wif
Not modelled, so not in the matrix: a maintainer running a fork's merge request pipeline in this
project (the fork's CI file with all of this project's variables, per the same variables page), and
pipeline variables (set `ci_pipeline_variables_minimum_override_role` to `no_one_allowed`).

    python -m verify.pipeline            # print the credential matrix
    python -m verify.pipeline --write    # regenerate it in docs/pipeline.md
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from cicd.pipeline_variables import ProjectVariable, infra_variables

from . import gitlab_ci_local

ROOT = Path(__file__).resolve().parent.parent
PIPELINE = ROOT / ".gitlab-ci.yml"
TEMPLATE = ROOT / "templates" / "buildkit-build.yml"
DOC = ROOT / "docs" / "pipeline.md"
SERVER = "https://gitlab.com"  # the shipped stacks' gitlab.url
INFRA = "acme/gitlab-buildkit-runner"  # the shipped stacks' preview.projectPath
APP = "acme/web"  # an application project of every shipped stack
APP_NAME = "web"
STACKS = {"dev": "dev", "staging": "staging", "prod": "production"}  # stack -> its GitLab environment
DEFAULT_BRANCH = "main"
# The deploy role is the operator's (docs/pipeline.md): trusted for the default branch of this project only.
DEPLOY_ROLE_SUBJECT = f"project_path:{INFRA}:ref_type:branch:ref:{DEFAULT_BRANCH}"
GUARD = "python3 -m cicd.job_env_guard"  # the one script line the evaluation keeps (and asserts present)
BEGIN, END = "<!-- BEGIN credential matrix (python -m verify.pipeline --write) -->", "<!-- END credential matrix -->"


@dataclass(frozen=True)
class Kind:
    key: str
    title: str
    source: str  # CI_PIPELINE_SOURCE
    ref: str
    tag: bool = False
    protected: bool = False
    fork: bool = False
    merge_request: bool = False


KINDS = (
    Kind("mr", "merge request from a branch", "merge_request_event", "feature/x", merge_request=True),
    Kind("mr-fork", "merge request from a fork (its branch named main)", "merge_request_event", "main", fork=True, merge_request=True),
    Kind("push-default", "push to the default branch", "push", DEFAULT_BRANCH, protected=True),
    Kind("push-protected", "push to a protected branch (infra/next)", "push", "infra/next", protected=True),
    Kind("push-unprotected", "push to an unprotected branch", "push", "feature/x"),
    Kind("tag-protected", "protected tag (v1.4.0)", "push", "v1.4.0", tag=True, protected=True),
    Kind("tag-unprotected", "unprotected tag", "push", "try-1", tag=True),
    Kind("schedule", "schedule (default branch)", "schedule", DEFAULT_BRANCH, protected=True),
    Kind("manual", "manual run (Run pipeline, default branch)", "web", DEFAULT_BRANCH, protected=True),
)
KIND = {k.key: k for k in KINDS}


@dataclass(frozen=True)
class Variable:
    """A CI/CD variable of a project as GitLab stores it; `value` is a sentinel the matrix looks for."""

    key: str
    value: str
    scope: str = "*"
    protected: bool = True
    file: bool = False
    credential: str | None = None


@dataclass
class Job:
    name: str
    stage: str
    when: str
    needs: list[str]
    environment: str | None
    env: dict[str, str]  # what the script sees
    tags: list[str]
    id_tokens: dict[str, str]  # variable -> aud (expanded)

    def id_token_subject(self) -> str | None:
        if not self.id_tokens:
            return None
        ref_type = "tag" if self.env.get("CI_COMMIT_TAG") else "branch"
        return f"project_path:{self.env['CI_PROJECT_PATH']}:ref_type:{ref_type}:ref:{self.env['CI_COMMIT_REF_NAME']}"


@dataclass
class Pipeline:
    kind: Kind
    created: bool
    jobs: dict[str, Job] = field(default_factory=dict)
    order: list[list[str]] = field(default_factory=list)  # stages in order, each with its jobs


# --- the evaluation -----------------------------------------------------------------------------------

_DUMP = (
    "python3 -c 'import json, os, sys\n"
    "env = dict(os.environ)\n"
    'files = {k: open(v).read() for k, v in env.items() if "gitlab-ci-local-file-variables" in v and os.path.isfile(v)}\n'
    'json.dump({"env": env, "files": files}, open(sys.argv[1], "w"))\' "$EVALUATION_DUMP_DIR/$CI_JOB_ID.json"'
)


def _evaluation_copy(document: dict[str, Any]) -> dict[str, Any]:
    """The pipeline with every script replaced by the environment dump (the guard line kept first),
    images, artifacts and caches removed (the shell executor runs nothing else), and `workflow:rules`
    as a job's rules."""
    out = json.loads(json.dumps(document))
    for name, job in out.items():
        if not isinstance(job, dict) or name in ("workflow", "variables", "default", "stages", "include", "spec"):
            continue
        kept = [line for line in job.get("before_script") or [] if line == GUARD]
        for key in ("before_script", "after_script", "image", "services", "artifacts", "cache"):
            job.pop(key, None)
        if kept:
            job["before_script"] = kept
        if "script" in job or not name.startswith("."):
            job["script"] = [_DUMP]
    for key in ("image", "before_script", "after_script", "artifacts", "cache"):
        (out.get("default") or {}).pop(key, None)
    rules = (out.get("workflow") or {}).get("rules")
    out["__workflow__"] = {"stage": (out.get("stages") or ["test"])[0], "rules": rules or [{"when": "always"}], "script": ["true"]}
    return out


def _predefined(kind: Kind, project: str) -> tuple[dict[str, str], list[str]]:
    """--variable values and --unset-variable names that make gitlab-ci-local's predefined variables the kind's."""
    slug = "".join(c if c.isalnum() else "-" for c in kind.ref.lower()).strip("-")[:63]
    values = {
        "CI_PIPELINE_SOURCE": kind.source,
        "CI_COMMIT_REF_PROTECTED": "true" if kind.protected else "false",
        "CI_DEFAULT_BRANCH": DEFAULT_BRANCH,
        "CI_COMMIT_REF_NAME": kind.ref,
        "CI_COMMIT_REF_SLUG": slug,
        "CI_SERVER_URL": SERVER,
        "CI_COMMIT_TIMESTAMP": "2026-12-01T10:00:00+00:00",
    }
    unset = []
    if kind.tag:
        values["CI_COMMIT_TAG"] = kind.ref
        unset.append("CI_COMMIT_BRANCH")
    elif kind.merge_request:
        values.update(
            {
                "CI_MERGE_REQUEST_IID": "7",
                "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME": kind.ref,
                "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": DEFAULT_BRANCH,
                "CI_MERGE_REQUEST_SOURCE_PROJECT_PATH": project,
                "CI_MERGE_REQUEST_PROJECT_PATH": project,
            }
        )
        unset.append("CI_COMMIT_BRANCH")  # merge-request pipelines have no CI_COMMIT_BRANCH
    else:
        values["CI_COMMIT_BRANCH"] = kind.ref
    return values, unset


def visible_variables(kind: Kind, variables: Sequence[Variable]) -> list[Variable]:
    """Our layer: the project variables GitLab passes to the kind's pipeline at all (before scopes)."""
    if kind.fork:
        return []  # the fork's own project has none of the parent's variables
    return [v for v in variables if kind.protected or not v.protected]


def _variables_file(variables: Sequence[Variable]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for v in variables:
        entry = out.setdefault(v.key, {"type": "file" if v.file else "variable", "values": {}})
        entry["values"][v.scope] = v.value
    return out


def _run(binary: Path, repo: Path, args: Sequence[str], env: Mapping[str, str]) -> str:
    result = subprocess.run([str(binary), *args], cwd=repo, capture_output=True, text=True, timeout=300, env=dict(env))
    if result.returncode != 0:
        raise RuntimeError(f"gitlab-ci-local {' '.join(args[:3])} failed ({result.returncode}): {(result.stdout + result.stderr)[-1500:]}")
    return result.stdout


def _json_from(text: str) -> Any:
    start = text.find("[\n")
    if start < 0:
        raise RuntimeError(f"no JSON list in gitlab-ci-local's output: {text[-500:]}")
    return json.loads(text[start:])


def evaluate(
    document: dict[str, Any],
    kind: Kind,
    project: str,
    variables: Sequence[Variable],
    files: Mapping[str, str] | None = None,
    *,
    protected_layer: bool = True,
) -> Pipeline:
    """One pipeline of `kind` for `document` in `project` (path), with these project variables."""
    binary = gitlab_ci_local.ensure()
    project_path = f"contributor/{project.split('/', 1)[1]}" if kind.fork else project
    passed = visible_variables(kind, variables) if protected_layer else list(variables)
    with tempfile.TemporaryDirectory(prefix="gcl-") as tmp:
        repo, dumps, home = Path(tmp) / "repo", Path(tmp) / "dumps", Path(tmp) / "home"
        for folder in (repo, dumps, home):
            folder.mkdir()
        # First the files as written, parsed and validated by gitlab-ci-local (once per file): the
        # evaluation copy below drops keys (cache, artifacts, images) GitLab also validates.
        (repo / ".gitlab-ci.yml").write_text(yaml.safe_dump(document, sort_keys=False))
        for name, text in (files or {}).items():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            (repo / name).write_text(text)
        # The files as given: gitlab-ci-local validates them, and expands them (--preview), once each.
        files_key = (yaml.safe_dump(document, sort_keys=True), tuple(sorted((files or {}).items())))
        validate_first = files_key not in _VALIDATED
        (repo / "cicd").mkdir(exist_ok=True)
        for module in ("__init__.py", "job_env_guard.py", "pipeline_variables.py"):
            shutil.copyfile(ROOT / "cicd" / module, repo / "cicd" / module)
        (repo / ".gitlab-ci-local-variables.yml").write_text(yaml.safe_dump(_variables_file(passed)))
        git = ["git", "-c", "user.email=ci@example.com", "-c", "user.name=ci", "-c", "commit.gpgsign=false"]
        subprocess.run(["git", "init", "-q", "-b", DEFAULT_BRANCH], cwd=repo, check=True)
        subprocess.run(["git", "remote", "add", "origin", f"{SERVER}/{project_path}.git"], cwd=repo, check=True)
        subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
        subprocess.run([*git, "commit", "-qm", "evaluation"], cwd=repo, check=True)
        subprocess.run(["git", "update-ref", f"refs/remotes/origin/{DEFAULT_BRANCH}", "HEAD"], cwd=repo, check=True)
        subprocess.run(["git", "symbolic-ref", "refs/remotes/origin/HEAD", f"refs/remotes/origin/{DEFAULT_BRANCH}"], cwd=repo, check=True)
        if not kind.tag and kind.ref != DEFAULT_BRANCH:
            subprocess.run(["git", "checkout", "-qb", kind.ref], cwd=repo, check=True)
        values, unset = _predefined(kind, project_path)
        args: list[str] = ["--force-shell-executor", "--concurrency", "1"]
        args += ["--ignore-predefined-vars", ",".join(sorted(values))]
        for key, value in values.items():
            args += ["--variable", f"{key}={value}"]
        for key in unset:
            args += ["--unset-variable", key]
        env = {
            **os.environ,
            "HOME": str(home),
            "EVALUATION_DUMP_DIR": str(dumps),
            "PATH": os.pathsep.join([*gitlab_ci_local.path_dirs(), os.environ.get("PATH", "")]),
        }
        for key in [k for k in env if k.startswith("GCL_") or k == "GITLAB_CI"]:
            env.pop(key)  # gitlab-ci-local reads GCL_* as options
        if validate_first:
            _run(binary, repo, [*args, "--list-json"], env)  # raises with gitlab-ci-local's message
            _VALIDATED.add(files_key)
        (repo / ".gitlab-ci.yml").write_text(yaml.safe_dump(_evaluation_copy(document), sort_keys=False))
        for name, text in (files or {}).items():
            # An included CI file (spec header, ---, jobs): its jobs get the same treatment.
            documents = list(yaml.safe_load_all(text))
            jobs = _evaluation_copy(documents[-1])
            jobs.pop("__workflow__", None)
            (repo / name).write_text(yaml.safe_dump_all([*documents[:-1], jobs], sort_keys=False))
        # The expanded file (extends, includes with inputs) once per file, with gitlab-ci-local's schema
        # validation; then, per kind, without it (the same file, ~0.3 s saved per run).
        if files_key not in _PREVIEWS:
            _PREVIEWS[files_key] = yaml.safe_load(_run(binary, repo, [*args, "--preview"], env).split("---\n", 1)[-1])
        preview = _PREVIEWS[files_key]
        args.append("--no-json-schema-validation")
        listed = _json_from(_run(binary, repo, [*args, "--list-json"], env))
        whens = {job["name"]: job["when"] for job in listed}
        pipeline = Pipeline(kind, created=whens.pop("__workflow__", "never") != "never")
        if not pipeline.created:
            return pipeline
        running = [job for job in listed if job["name"] != "__workflow__" and job["when"] != "never"]
        manual = [job["name"] for job in running if job["when"] == "manual"]
        run_args = [*args, *[arg for name in manual for arg in ("--manual", name)]]
        _run(binary, repo, run_args, env)
        seen: dict[str, dict[str, Any]] = {}
        for dump in dumps.glob("*.json"):
            data = json.loads(dump.read_text())
            job_env = {**data["env"], **data["files"]}  # a file-type variable: its content, not the temporary path
            seen[job_env["CI_JOB_NAME"]] = job_env
        stages = [s for s in (preview.get("stages") or []) if s not in (".pre", ".post")]
        for job in running:
            name = job["name"]
            if name not in seen:
                raise RuntimeError(f"{kind.key}: job {name!r} is listed to run but gitlab-ci-local ran no script of it")
            base = _preview_job(preview, name)
            job_env = seen[name]
            pipeline.jobs[name] = Job(
                name=name,
                stage=job["stage"],
                when=job["when"],
                needs=[n["job"] if isinstance(n, dict) else n for n in (job.get("needs") or [])],
                environment=job_env.get("CI_ENVIRONMENT_NAME"),
                env=job_env,
                tags=[_expand(str(t), job_env) for t in base.get("tags") or []],
                id_tokens={k: _expand(str(v.get("aud", "")), job_env) for k, v in (base.get("id_tokens") or {}).items()},
            )
        pipeline.order = [[n for n in pipeline.jobs if pipeline.jobs[n].stage == s] for s in stages]
        pipeline.order = [names for names in pipeline.order if names]
        return pipeline


_PREVIEWS: dict[tuple[str, tuple[tuple[str, str], ...]], Any] = {}
_VALIDATED: set[tuple[str, tuple[tuple[str, str], ...]]] = set()


def _preview_job(preview: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    if name in preview:
        return preview[name]
    base = name.split(": [", 1)[0]  # a parallel:matrix job keeps its base job's keys
    return preview[base]


def _expand(text: str, env: Mapping[str, str]) -> str:
    for key in sorted(env, key=len, reverse=True):
        text = text.replace("${" + key + "}", env[key]).replace("$" + key, env[key])
    return text


# --- the project settings the matrix runs with --------------------------------------------------------


def infra_project_variables() -> list[Variable]:
    return [_as_variable(v) for v in infra_variables()]


def _as_variable(v: ProjectVariable) -> Variable:
    value = f"<{v.credential or v.key.lower()}:{v.scope}>"
    return Variable(v.key, value, v.scope, v.protected, v.file, v.credential)


@dataclass(frozen=True)
class StackFacts:
    """What a synthesised stack says about the application project and its runner."""

    stack: str
    environment: str
    credentials_mode: str
    variables: tuple[Variable, ...]
    push_role_trust: dict[str, Any] | None
    preview_role_trust: dict[str, Any] | None
    runner_tags: tuple[str, ...]
    runner_untagged: bool
    runner_protected: bool


@cache
def stack_facts(stack: str, warm: bool = False) -> StackFacts:
    """What the shipped stack writes; with `warm`, the same stack with builders.mode 'warm'."""
    from components.config import parse_config

    from .harness import load_stack_file, run_program, unwrap_secrets

    raw = dict(load_stack_file(stack))
    if warm:
        raw["builders"] = {"mode": "warm"}
    cfg = parse_config(raw, stack=stack)
    run = run_program(raw, stack=stack)
    variables = []
    for reg in run.of_type("gitlab:index/projectVariable:ProjectVariable"):
        inputs = unwrap_secrets(reg.inputs)
        if inputs["project"] != APP:
            continue
        key = inputs["key"]
        credential = {
            "AWS_ACCESS_KEY_ID": "push keys",
            "AWS_SECRET_ACCESS_KEY": "push keys",
            "AWS_ROLE_ARN": "push role",
            "BUILDKIT_TLS_CERT_B64": "warm daemon client certificate",
            "BUILDKIT_TLS_KEY_B64": "warm daemon client certificate",
        }.get(key)
        value = f"<{credential}:{cfg.environment_scope}>" if credential else f"<{key.lower()}:{cfg.environment_scope}>"
        variables.append(Variable(key, value, inputs["environmentScope"], bool(inputs.get("protected")), False, credential))
    roles = {r.inputs.get("name"): unwrap_secrets(r.inputs) for r in run.of_type("aws:iam/role:Role")}
    push = next((json.loads(r["assumeRolePolicy"]) for r in roles.values() if APP.replace("/", "-") in str(r.get("name"))), None)
    preview = roles.get(f"gitlab-buildkit-preview-{cfg.environment}")
    runner = unwrap_secrets(run.one("gitlab:index/userRunner:UserRunner").inputs)
    return StackFacts(
        stack=stack,
        environment=STACKS[stack],
        credentials_mode=cfg.credentials.mode,
        variables=tuple(variables),
        push_role_trust=push if cfg.credentials.mode == "oidc" else None,
        preview_role_trust=json.loads(preview["assumeRolePolicy"]) if preview else None,
        runner_tags=tuple(runner.get("tagLists") or []),
        runner_untagged=bool(runner.get("untagged")),
        runner_protected=runner.get("accessLevel") == "ref_protected",
    )


def consumer_pipeline(environment: str, credentials: str, **inputs: Any) -> dict[str, Any]:
    """An application project's .gitlab-ci.yml as docs/template-adoption.md shows it."""
    given = {"app": APP_NAME, "environment": environment, "credentials": credentials, **inputs}
    return {"stages": ["build"], "include": [{"local": "templates/buildkit-build.yml", "inputs": given}]}


# --- IAM trust and runners ---------------------------------------------------------------------------


def _string_like(value: str, pattern: str) -> bool:
    """IAM StringLike: '*' any run of characters (slashes included), '?' one character, case-sensitive."""
    return fnmatch.fnmatchcase(value, pattern.replace("[", "[[]"))


def trusts(policy: Mapping[str, Any] | None, subject: str | None, audience: str, host: str) -> bool:
    """Whether STS would accept an ID token (sub, aud) for a role with this trust policy (Allow only)."""
    if policy is None or subject is None:
        return False
    claims = {f"{host}:sub": subject, f"{host}:aud": audience}
    for statement in policy.get("Statement", []):
        if statement.get("Effect") != "Allow" or statement.get("Action") not in (
            "sts:AssumeRoleWithWebIdentity",
            ["sts:AssumeRoleWithWebIdentity"],
        ):
            continue
        ok = True
        for operator, conditions in (statement.get("Condition") or {}).items():
            if operator not in ("StringEquals", "StringLike"):
                ok = False  # an operator this model does not know: not trusted (fail closed)
                break
            for key, wanted in conditions.items():
                values = wanted if isinstance(wanted, list) else [wanted]
                actual = claims.get(key)
                if actual is None:
                    ok = False
                elif operator == "StringEquals":
                    ok = ok and actual in values
                else:
                    ok = ok and any(_string_like(actual, v) for v in values)
        if ok and statement.get("Condition"):
            return True
    return False


def runner_takes(facts: StackFacts, job: Job, kind: Kind) -> bool:
    if job.tags:
        if not set(job.tags) <= set(facts.runner_tags):
            return False
    elif not facts.runner_untagged:
        return False
    return kind.protected or not facts.runner_protected


# --- the matrix ----------------------------------------------------------------------------------------

READ_ONLY_JOBS = ("lint", "test", "synth", "desired-state-diff", "preview")
DEPLOY_CREDENTIALS = ("deploy role", "deploy kubeconfig", "GitLab api token")


@dataclass
class Row:
    pipeline: str  # "infra" or "template (<environment>)"
    kind: Kind
    job: str
    environment: str | None
    credentials: list[str]
    subject: str | None
    runners: list[str]
    stage: str = ""
    manual: bool = False


def credentials_of(job: Job, variables: Sequence[Variable], roles: Mapping[str, Mapping[str, Any] | None]) -> list[str]:
    """Credentials whose sentinel is in the job's environment; a role counts only when the job also holds
    an ID token that role's trust accepts."""
    found: set[str] = set()
    values = set(job.env.values())
    for v in variables:
        if v.credential and v.value in values:
            if v.credential in roles:
                if any(trusts(roles[v.credential], job.id_token_subject(), aud, "gitlab.com") for aud in job.id_tokens.values()):
                    found.add(v.credential)
                else:
                    found.add(f"{v.credential} ARN (not trusted)")
            else:
                found.add(v.credential)
    return sorted(found)


def _deploy_trust() -> dict[str, Any]:
    return {
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {"StringEquals": {"gitlab.com:sub": DEPLOY_ROLE_SUBJECT, "gitlab.com:aud": SERVER}},
            }
        ]
    }


def infra_rows(kinds: Iterable[Kind] = KINDS) -> list[Row]:
    document = yaml.safe_load(PIPELINE.read_text())
    variables = infra_project_variables()
    rows = []
    kinds = list(kinds)
    with ThreadPoolExecutor(max_workers=2) as pool:
        pipelines = list(pool.map(lambda k: evaluate(document, k, INFRA, variables), kinds))
    for kind, pipeline in zip(kinds, pipelines, strict=True):
        for name in [n for stage in pipeline.order for n in stage]:
            job = pipeline.jobs[name]
            env_name = job.environment or ""
            stack = next((s for s, e in STACKS.items() if env_name.endswith(e)), None)
            roles = {
                "deploy role": _deploy_trust(),
                "preview role": stack_facts(stack).preview_role_trust if stack else None,
            }
            rows.append(
                Row(
                    "infra",
                    kind,
                    name,
                    job.environment,
                    credentials_of(job, variables, roles),
                    job.id_token_subject(),
                    [],
                    job.stage,
                    job.when == "manual",
                )
            )
        if not pipeline.created:
            rows.append(Row("infra", kind, "(no pipeline)", None, [], None, []))
    return rows


def template_rows(kinds: Iterable[Kind] = KINDS) -> list[Row]:
    rows = []
    kinds = list(kinds)
    facts = {stack: stack_facts(stack) for stack in STACKS}
    # One more project setup: dev with builders.mode 'warm' (its daemon's client certificate), in place of dev's.
    variants = [(stack, STACKS[stack], facts[stack]) for stack in STACKS] + [("dev", "dev, warm builders", stack_facts("dev", warm=True))]
    template = {"templates/buildkit-build.yml": TEMPLATE.read_text()}
    jobs = [(variant, kind) for variant in variants for kind in kinds]

    def variables_of(variant: tuple[str, str, StackFacts]) -> list[Variable]:
        return [v for s, f in facts.items() if s != variant[0] for v in f.variables] + list(variant[2].variables)

    with ThreadPoolExecutor(max_workers=2) as pool:
        pipelines = list(
            pool.map(
                lambda vk: evaluate(
                    consumer_pipeline(STACKS[vk[0][0]], vk[0][2].credentials_mode), vk[1], APP, variables_of(vk[0]), template
                ),
                jobs,
            )
        )
    for (variant, kind), pipeline in zip(jobs, pipelines, strict=True):
        _stack, label, fact = variant
        variables = variables_of(variant)
        roles = {"push role": fact.push_role_trust}
        if not pipeline.jobs:
            rows.append(Row(f"template ({label})", kind, "(no job)", None, [], None, []))
        for name, job in pipeline.jobs.items():
            runners = [s for s, f in facts.items() if runner_takes(f, job, kind)]
            rows.append(
                Row(
                    f"template ({label})",
                    kind,
                    name,
                    job.environment,
                    credentials_of(job, variables, roles),
                    job.id_token_subject(),
                    runners,
                    job.stage,
                    job.when == "manual",
                )
            )
    return rows


def markdown(rows: Sequence[Row]) -> str:
    lines = [
        "| pipeline | kind | job | environment | credentials in reach | ID token `sub` | runners that may take it |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        creds = ", ".join(r.credentials) or "none"
        runners = ", ".join(r.runners) if r.pipeline != "infra" else ""
        sub = f"`{r.subject.split(':ref_type:', 1)[1]}`" if r.subject else ""
        lines.append(f"| {r.pipeline} | {r.kind.title} | `{r.job}` | {r.environment or ''} | {creds} | {sub} | {runners} |")
    return "\n".join(lines) + "\n"


def order_markdown(rows: Sequence[Row]) -> str:
    """Per pipeline and kind: the jobs that run, stage after stage."""
    lines = ["| pipeline | kind | jobs, stage by stage |", "|---|---|---|"]
    seen: dict[tuple[str, str], list[str]] = {}
    for r in rows:
        seen.setdefault((r.pipeline, r.kind.title), [])
        if not r.job.startswith("("):
            seen[(r.pipeline, r.kind.title)].append(f"{r.stage}: `{r.job}`" + (" (manual)" if r.manual else ""))
    for (pipeline, title), jobs in seen.items():
        stages: dict[str, list[str]] = {}
        for item in jobs:
            stage, job = item.split(": ", 1)
            stages.setdefault(stage, []).append(job)
        text = " → ".join(f"{stage} ({', '.join(names)})" for stage, names in stages.items()) or (
            "no pipeline (workflow:rules)" if pipeline == "infra" else "no job (the template's rules)"
        )
        lines.append(f"| {pipeline} | {title} | {text} |")
    return "\n".join(lines) + "\n"


def matrix_markdown() -> str:
    infra, template = infra_rows(), template_rows()
    return order_markdown(infra + template) + "\n" + markdown(infra) + "\n" + markdown(template)


VARIABLES_BEGIN, VARIABLES_END = "<!-- BEGIN project variables (python -m verify.pipeline --write) -->", "<!-- END project variables -->"


def variables_markdown() -> str:
    """This project's CI/CD variables (cicd/pipeline_variables.py) as docs/pipeline.md lists them."""
    lines = ["| key | environment scope | flags | what |", "|---|---|---|---|"]
    for v in infra_variables():
        flags = ", ".join(flag for flag, on in (("protected", v.protected), ("masked", v.masked), ("file", v.file)) if on)
        lines.append(f"| `{v.key}` | `{v.scope}` | {flags} | {v.purpose} |")
    return "\n".join(lines) + "\n"


def _between(text: str, begin: str, end: str, body: str) -> str:
    if begin not in text or end not in text:
        raise ValueError(f"{DOC} lacks the markers {begin} ... {end}")
    head, rest = text.split(begin, 1)
    return head + begin + "\n" + body + end + rest.split(end, 1)[1]


def render_doc(text: str, table: str) -> str:
    """docs/pipeline.md with the credential matrix and the variables table regenerated."""
    return _between(_between(text, BEGIN, END, table), VARIABLES_BEGIN, VARIABLES_END, variables_markdown())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help="regenerate the table in docs/pipeline.md")
    args = parser.parse_args(argv)
    table = matrix_markdown()
    if args.write:
        DOC.write_text(render_doc(DOC.read_text(), table))
        print(f"wrote the credential matrix into {DOC.relative_to(ROOT)}")
    else:
        print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
