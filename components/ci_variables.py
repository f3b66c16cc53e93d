"""GitLab CI/CD variables the application build template consumes, scoped to this stack's environment.

The names are a contract with templates/buildkit-build.yml (config/ci_names.py); tests cross-check both sides.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_gitlab as gitlab

from .config import CredentialsMode, GitlabConfig
from .config.ci_names import (
    AWS_ACCESS_KEY_ID,
    AWS_DEFAULT_REGION,
    AWS_ROLE_ARN,
    AWS_SECRET_ACCESS_KEY,
    CACHE_REPOSITORY,
    ECR_REGISTRY,
    repository_variable,
)
from .marks import component_type


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
    *,
    region: str,
    credentials_mode: CredentialsMode,
    registry_host: Any,
    repository_urls: Mapping[str, Any],
    cache_url: Any,
    access_key_id: Any = None,
    secret_access_key: Any = None,
    role_arn: Any = None,
) -> list[CiVariable]:
    """Every variable the stack writes; values may be Pulumi Inputs (placed, never inspected)."""
    specs = [
        CiVariable(ECR_REGISTRY, registry_host, description="ECR registry host to log in to"),
        CiVariable(CACHE_REPOSITORY, cache_url, description="BuildKit registry cache repository"),
        CiVariable(AWS_DEFAULT_REGION, region, description="AWS region of the registry"),
    ]
    specs += [CiVariable(repository_variable(app), url, description=f"ECR repository of {app}") for app, url in repository_urls.items()]
    if credentials_mode == "access-key":
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
    gitlab: GitlabConfig
    environment_scope: str
    region: str
    credentials_mode: CredentialsMode
    registry_host: pulumi.Input[str]
    repository_urls: Mapping[str, pulumi.Input[str]]
    cache_url: pulumi.Input[str]
    access_key_id: pulumi.Input[str] | None = None
    secret_access_key: pulumi.Input[str] | None = None
    role_arn: pulumi.Input[str] | None = None


class CiVariables(pulumi.ComponentResource):
    variables: dict[str, gitlab.ProjectVariable | gitlab.GroupVariable]

    def __init__(self, name: str, args: CiVariablesArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(component_type("gitlab", "CiVariables"), name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        specs = ci_variable_specs(
            region=args.region,
            credentials_mode=args.credentials_mode,
            registry_host=args.registry_host,
            repository_urls=args.repository_urls,
            cache_url=args.cache_url,
            access_key_id=args.access_key_id,
            secret_access_key=args.secret_access_key,
            role_arn=args.role_arn,
        )
        scope = args.environment_scope
        self.variables = {}
        for var in specs:
            common: dict[str, Any] = {
                "key": var.key,
                "value": pulumi.Output.secret(var.value) if var.secret else var.value,
                "environment_scope": scope,
                "protected": var.always_protected or args.gitlab.protect_variables,
                "masked": var.masked,
                "raw": True,  # no $-expansion of values
                "description": var.description,
                "opts": child,
            }
            if var.hidden:
                common["hidden"] = True
            resource_name = f"{name}-{var.key.lower()}"
            if args.gitlab.variables_project:
                self.variables[var.key] = gitlab.ProjectVariable(resource_name, project=args.gitlab.variables_project, **common)
            else:
                self.variables[var.key] = gitlab.GroupVariable(resource_name, group=args.gitlab.variables_group, **common)
        self.register_outputs({"keys": sorted(self.variables), "environmentScope": scope})
