"""GitLab CI/CD variables the application build template consumes, scoped to this stack's environment.

The names are a contract with templates/buildkit-build.yml; tests cross-check both sides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_gitlab as gitlab

from .config import StackConfig, variable_suffix

ECR_REGISTRY = "ECR_REGISTRY"
ECR_REPOSITORY_PREFIX = "ECR_REPOSITORY_"  # + variable_suffix(app): ECR_REPOSITORY_WEB_API
CACHE_REPOSITORY = "BUILDKIT_CACHE_REPOSITORY"
AWS_DEFAULT_REGION = "AWS_DEFAULT_REGION"
AWS_ACCESS_KEY_ID = "AWS_ACCESS_KEY_ID"
AWS_SECRET_ACCESS_KEY = "AWS_SECRET_ACCESS_KEY"
AWS_ROLE_ARN = "AWS_ROLE_ARN"


@dataclass(frozen=True)
class CiVariable:
    key: str
    value: Any  # pulumi.Input[str]
    masked: bool = False
    hidden: bool = False
    always_protected: bool = False  # credentials: only protected refs ever see them
    secret: bool = False
    description: str = ""


def ci_variable_specs(
    cfg: StackConfig,
    *,
    registry: Any,
    repository_urls: dict[str, Any],
    cache_url: Any,
    access_key_id: Any = None,
    secret_access_key: Any = None,
    role_arn: Any = None,
) -> list[CiVariable]:
    """Every variable the stack writes; values may be Pulumi Inputs (placed, never inspected)."""
    specs = [
        CiVariable(ECR_REGISTRY, registry, description="ECR registry host to log in to"),
        CiVariable(CACHE_REPOSITORY, cache_url, description="BuildKit registry cache repository"),
        CiVariable(AWS_DEFAULT_REGION, cfg.registry.region, description="AWS region of the registry"),
    ]
    specs += [
        CiVariable(f"{ECR_REPOSITORY_PREFIX}{variable_suffix(app)}", url, description=f"ECR repository of {app}")
        for app, url in repository_urls.items()
    ]
    if cfg.credentials.mode == "access-key":
        specs += [
            CiVariable(AWS_ACCESS_KEY_ID, access_key_id, masked=True, always_protected=True, description="push identity access key id"),
            CiVariable(
                AWS_SECRET_ACCESS_KEY,
                secret_access_key,
                masked=True,
                hidden=True,
                secret=True,
                always_protected=True,
                description="push identity secret access key",
            ),
        ]
    else:
        specs.append(CiVariable(AWS_ROLE_ARN, role_arn, always_protected=True, description="role assumed with the job's GitLab ID token"))
    return specs


@dataclass(frozen=True)
class CiVariablesArgs:
    config: StackConfig
    variables: list[CiVariable]


class CiVariables(pulumi.ComponentResource):
    variables: dict[str, gitlab.ProjectVariable | gitlab.GroupVariable]

    def __init__(self, name: str, args: CiVariablesArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gitlab-buildkit-runner:gitlab:CiVariables", name, None, opts)
        cfg = args.config
        child = pulumi.ResourceOptions(parent=self)
        scope = cfg.environment_scope
        self.variables = {}
        for var in args.variables:
            common: dict[str, Any] = {
                "key": var.key,
                "value": pulumi.Output.secret(var.value) if var.secret else var.value,
                "environment_scope": scope,
                "protected": var.always_protected or cfg.gitlab.protect_variables,
                "masked": var.masked,
                "raw": True,  # no $-expansion of values
                "description": var.description,
                "opts": child,
            }
            if var.hidden:
                common["hidden"] = True
            resource_name = f"{name}-{var.key.lower()}"
            if cfg.gitlab.variables_project:
                self.variables[var.key] = gitlab.ProjectVariable(resource_name, project=cfg.gitlab.variables_project, **common)
            else:
                self.variables[var.key] = gitlab.GroupVariable(resource_name, group=cfg.gitlab.variables_group, **common)
        self.register_outputs({"keys": sorted(self.variables), "environmentScope": scope})
