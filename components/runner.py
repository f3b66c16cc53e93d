"""The GitLab runner: created through the GitLab API, its token in a Secret, the chart as a Helm release."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import pulumi
import pulumi_gitlab as gitlab
import pulumi_kubernetes as k8s

from .config import RunnerConfig
from .helm_values import build_helm_values
from .marks import MANAGED_BY, RUNNER_ID_ANNOTATION, component_type
from .runner_config import build_runner_config, render_toml

RELEASE_NAME = "gitlab-runner"
TOKEN_SECRET_NAME = "gitlab-runner-token"
# Ref: https://gitlab.com/gitlab-org/charts/gitlab-runner/-/blob/v0.86.0/templates/deployment.yaml (mounts both keys of
# `runners.secret` by name); the registration token is deprecated and stays empty.
RUNNER_TOKEN_KEY = "runner-token"
REGISTRATION_TOKEN_KEY = "runner-registration-token"


@dataclass(frozen=True)
class GitlabRunnerArgs:
    runner: RunnerConfig
    environment: str
    gitlab_url: str
    manager_namespace: str
    job_namespace: str
    manager_service_account: str
    job_service_account: str
    job_automount_service_account_token: bool
    # The manager Namespace resource: the Secret lives there (its name is a plain string).
    manager_namespace_resource: pulumi.Resource
    # Everything the release waits for: namespaces, RBAC, network isolation.
    depends_on: Sequence[pulumi.Resource]


class GitlabRunner(pulumi.ComponentResource):
    """`gitlab.UserRunner` -> Secret(runner-token) -> `helm.v3.Release` of the official chart."""

    user_runner: gitlab.UserRunner
    token_secret: k8s.core.v1.Secret
    release: k8s.helm.v3.Release
    runner_config_toml: str
    runner_id: pulumi.Output[str]
    release_status: pulumi.Output[str | None]

    def __init__(self, name: str, args: GitlabRunnerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(component_type("runner", "GitlabRunner"), name, None, opts)
        rc = args.runner
        child = pulumi.ResourceOptions(parent=self)
        # Ref: https://docs.gitlab.com/ci/runners/new_creation_workflow/ (POST /user/runners returns a
        # glrt- authentication token once; the provider keeps it as a secret output).
        self.user_runner = gitlab.UserRunner(
            f"{name}-runner",
            runner_type=rc.scope.type,
            project_id=rc.scope.project_id,
            group_id=rc.scope.group_id,
            description=f"{rc.description} ({args.environment})",
            tag_lists=list(rc.tags),
            untagged=rc.run_untagged,
            access_level="ref_protected" if rc.protected_only else "not_protected",
            locked=rc.scope.type == "project_type",
            maximum_timeout=rc.maximum_timeout_seconds,
            opts=child,
        )
        self.runner_id = self.user_runner.id
        self.token_secret = k8s.core.v1.Secret(
            f"{name}-token",
            metadata={"name": TOKEN_SECRET_NAME, "namespace": args.manager_namespace, "labels": MANAGED_BY},
            type="Opaque",
            string_data={
                RUNNER_TOKEN_KEY: pulumi.Output.secret(cast(Any, self.user_runner.token)),
                REGISTRATION_TOKEN_KEY: "",
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[args.manager_namespace_resource]),
        )
        self.runner_config_toml = render_toml(
            build_runner_config(
                rc,
                environment=args.environment,
                job_namespace=args.job_namespace,
                job_service_account=args.job_service_account,
                automount_service_account_token=args.job_automount_service_account_token,
            )
        )
        values = build_helm_values(
            rc,
            gitlab_url=args.gitlab_url,
            job_namespace=args.job_namespace,
            secret_name=TOKEN_SECRET_NAME,
            service_account=args.manager_service_account,
            runner_config_toml=self.runner_config_toml,
            # A replaced runner (new id, new token) must restart the manager: the chart only hashes its own Secret.
            pod_annotations={RUNNER_ID_ANNOTATION: self.user_runner.id},
        )
        self.release = k8s.helm.v3.Release(
            f"{name}-release",
            name=RELEASE_NAME,
            chart="gitlab-runner",
            version=rc.chart_version,
            repository_opts={"repo": rc.chart_repository},
            namespace=args.manager_namespace,
            values=values,
            atomic=True,
            cleanup_on_fail=True,
            max_history=10,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.token_secret, *args.depends_on]),
        )
        self.release_status = self.release.status.apply(lambda s: s.get("status") if s else None)
        self.register_outputs({"runnerId": self.runner_id, "releaseName": self.release.name, "releaseStatus": self.release_status})
