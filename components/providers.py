"""Explicit providers: nothing in the stack falls back to ambient default providers."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_gitlab as gitlab
import pulumi_kubernetes as k8s

from .config import StackConfig
from .marks import PROJECT


@dataclass(frozen=True)
class Providers:
    kubernetes: k8s.Provider
    aws: aws.Provider
    gitlab: gitlab.Provider


def build_providers(cfg: StackConfig) -> Providers:
    # The GitLab token: secret config `gitlabToken`, else the provider reads GITLAB_TOKEN itself.
    token = pulumi.Config(PROJECT).get_secret("gitlabToken")
    return Providers(
        kubernetes=k8s.Provider("kubernetes", context=cfg.kubernetes.context, enable_server_side_apply=True),
        aws=aws.Provider(
            "aws",
            region=cfg.registry.region,
            default_tags={"tags": {"managed-by": "pulumi", "project": PROJECT, "environment": cfg.environment}},
        ),
        gitlab=gitlab.Provider("gitlab", base_url=f"{cfg.gitlab.url}/api/v4", token=token),
    )
