"""GitLab CI/CD variables the application build template consumes, scoped to this stack's environment.

The names are a contract with templates/buildkit-build.yml (config/ci_names.py); tests cross-check both sides.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_gitlab as gitlab

from .config import CredentialsMode
from .config.ci_names import (
    AWS_ACCESS_KEY_ID,
    AWS_DEFAULT_REGION,
    AWS_ROLE_ARN,
    AWS_SECRET_ACCESS_KEY,
    BUILDKIT_HOST,
    BUILDKIT_TLS_CA,
    BUILDKIT_TLS_CERT,
    BUILDKIT_TLS_KEY,
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


def shared_variable_specs(*, region: str, registry_host: Any) -> list[CiVariable]:
    """Non-secret variables every project needs; in each project, or once in the opt-in shared group."""
    return [
        CiVariable(ECR_REGISTRY, registry_host, description="ECR registry host to log in to"),
        CiVariable(AWS_DEFAULT_REGION, region, description="AWS region of the registry"),
    ]


def project_variable_specs(
    *,
    credentials_mode: CredentialsMode,
    repository_urls: Mapping[str, Any],
    cache_url: Any,
    access_key_id: Any = None,
    secret_access_key: Any = None,
    role_arn: Any = None,
    warm: Any = None,  # a WarmBuilder (address, ca_b64, client_cert_b64, client_key_b64) in builders.mode 'warm'
) -> list[CiVariable]:
    """A project's own variables: its applications' repositories, its cache, its push credentials.
    Values may be Pulumi Inputs (placed, never inspected)."""
    specs = [CiVariable(CACHE_REPOSITORY, cache_url, description="this project's BuildKit registry cache repository")]
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
    if warm is not None:
        # Protected always: only protected refs may use (and so fill the caches of) the project's daemon.
        specs += [
            CiVariable(BUILDKIT_HOST, warm.address, always_protected=True, description="this project's warm BuildKit daemon"),
            CiVariable(BUILDKIT_TLS_CA, warm.ca_b64, masked=True, always_protected=True, description="the daemon's CA (base64 PEM)"),
            CiVariable(
                BUILDKIT_TLS_CERT,
                warm.client_cert_b64,
                masked=True,
                always_protected=True,
                description="this project's client certificate (base64 PEM)",
            ),
            CiVariable(
                BUILDKIT_TLS_KEY,
                warm.client_key_b64,
                masked=True,
                hidden=True,
                secret=True,
                always_protected=True,
                description="this project's client key (base64 PEM)",
            ),
        ]
    return specs


@dataclass(frozen=True)
class CiVariablesArgs:
    variables: Sequence[CiVariable]
    environment_scope: str
    protect_variables: bool
    project: str | None = None  # exactly one of project / group
    group: str | None = None


class CiVariables(pulumi.ComponentResource):
    """Variables of one GitLab project (or of the opt-in shared group), scoped to the environment."""

    variables: dict[str, gitlab.ProjectVariable | gitlab.GroupVariable]

    def __init__(self, name: str, args: CiVariablesArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(component_type("gitlab", "CiVariables"), name, None, opts)
        assert (args.project is None) != (args.group is None), "one target"
        child = pulumi.ResourceOptions(parent=self)
        self.variables = {}
        for var in args.variables:
            common: dict[str, Any] = {
                "key": var.key,
                "value": pulumi.Output.secret(var.value) if var.secret else var.value,
                "environment_scope": args.environment_scope,
                "protected": var.always_protected or args.protect_variables,
                "masked": var.masked,
                "raw": True,  # no $-expansion of values
                "description": var.description,
                "opts": child,
            }
            if var.hidden:
                common["hidden"] = True
            resource_name = f"{name}-{var.key.lower()}"
            if args.project:
                self.variables[var.key] = gitlab.ProjectVariable(resource_name, project=args.project, **common)
            else:
                self.variables[var.key] = gitlab.GroupVariable(resource_name, group=args.group, **common)
        self.register_outputs({"keys": sorted(self.variables), "target": args.project or args.group})
