"""The CI/CD variables of this infrastructure project, as its pipeline (.gitlab-ci.yml) expects them.

One home: docs/pipeline.md's table, the job guard (cicd.job_env_guard) and the pipeline-semantics
tests (verify/pipeline.py) read this list. Deploy credentials are scoped to the deploy environments
(`dev`, `staging`, `production`), preview credentials to `preview/<environment>`: GitLab hands a job
the variables whose environment scope matches the job's `environment:`, and a project variable beats
the job's own `variables:`, so the read-only preview job (environment `preview/<env>`) never receives
a deploy credential under any name. No variable carries a tool's own name (KUBECONFIG, GITLAB_TOKEN,
AWS_*): the job scripts export those from the variables below, after the guard has checked that
nothing else set them.
Ref: https://docs.gitlab.com/ci/variables/#cicd-variable-precedence
Ref: https://docs.gitlab.com/ci/environments/#limit-the-environment-scope-of-a-cicd-variable
"""

from __future__ import annotations

from dataclasses import dataclass

DEPLOY_ENVIRONMENTS = ("dev", "staging", "production")  # the GitLab environments of the dev, staging and prod stacks


def preview_environment(environment: str) -> str:
    return f"preview/{environment}"


@dataclass(frozen=True)
class ProjectVariable:
    key: str
    scope: str
    protected: bool = True
    masked: bool = False
    file: bool = False
    credential: str | None = None  # the credential matrix's column, None for a non-secret setting
    purpose: str = ""


def infra_variables() -> list[ProjectVariable]:
    out = [
        ProjectVariable("PULUMI_BACKEND_URL", "*", purpose="state backend, e.g. s3://acme-pulumi-state?region=eu-west-1"),
    ]
    for env in DEPLOY_ENVIRONMENTS:
        preview = preview_environment(env)
        out += [
            ProjectVariable(
                "PULUMI_CONFIG_PASSPHRASE",
                scope,
                masked=True,
                credential="state passphrase",
                purpose="only with the passphrase secrets provider",
            )
            for scope in (env, preview)
        ]
        out += [
            ProjectVariable("PULUMI_DEPLOY_ROLE_ARN", env, credential="deploy role", purpose="role the deploy and drift jobs assume"),
            ProjectVariable(
                "DEPLOY_KUBECONFIG", env, file=True, credential="deploy kubeconfig", purpose="cluster-admin kubeconfig of the stack"
            ),
            ProjectVariable(
                "DEPLOY_GITLAB_TOKEN",
                env,
                masked=True,
                credential="GitLab api token",
                purpose="create_runner + api scopes (GitLab provider)",
            ),
            ProjectVariable("PULUMI_PREVIEW_ROLE_ARN", preview, credential="preview role", purpose="the stack's read-only preview role"),
            ProjectVariable(
                "PREVIEW_KUBECONFIG", preview, file=True, credential="preview kubeconfig", purpose="the pulumi-preview ServiceAccount"
            ),
            ProjectVariable("PREVIEW_GITLAB_TOKEN", preview, masked=True, credential="GitLab read token", purpose="read_api scope"),
        ]
    out.append(
        ProjectVariable(
            "PREVIEW_NOTE_TOKEN", "preview/*", masked=True, credential="MR note token", purpose="api scope, writes the preview notes"
        )
    )
    return out


# Environment variables tools read by themselves: never the name of a CI/CD variable of this project.
# A project variable so named would reach every job its scope matches and override the job's own value.
TOOL_VARIABLES = (
    "KUBECONFIG",
    "GITLAB_TOKEN",
    "GITLAB_BASE_URL",
    "AWS_ROLE_ARN",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
)

# The variables of releases before 2.0.0 and what replaced them (UPGRADE.md).
RENAMED = {
    "KUBECONFIG": "DEPLOY_KUBECONFIG (environments dev, staging, production) and PREVIEW_KUBECONFIG (environments preview/<env>)",
    "GITLAB_TOKEN": "DEPLOY_GITLAB_TOKEN (environments dev, staging, production) and PREVIEW_GITLAB_TOKEN (environments preview/<env>)",
}
