"""The stack configuration: one frozen pydantic model, validated before any resource exists.

Every key lives in the project namespace (``gitlab-buildkit-runner:<key>``) and is documented in
``Pulumi.yaml``. Unknown keys, bad values and broken cross-field rules all fail in
:func:`load_config`, with a message that names the key, the value and what is allowed.

Layout: ``fields`` (types and parsing), one module of models per concern (``kubernetes``, ``runner``,
``registry``, ``credentials``, ``gitlab``, ``network``, ``stack``), ``loading`` (the engine's config
and error messages) and ``ci_names`` (the CI/CD variable names shared with the build template).
"""

from .builders import BuildersConfig, WarmBuilderConfig
from .ci_names import variable_suffix
from .confinement import NODE_OS, ConfinedProfiles, NodeOs, ProfileNames
from .credentials import CredentialsConfig, CredentialsMode, KeySlot, OidcSubject
from .fields import is_pinned_image, parse_quantity, split_image
from .gitlab import GitlabConfig
from .kubernetes import JobQuota, KubernetesConfig, Resources
from .loading import PROJECT, SECRET_KEYS, ConfigError, invalid, load_config, parse_config, project_config
from .network import NetworkConfig
from .preview import PreviewConfig
from .registry import Application, Lifecycle, RegistryConfig, project_key
from .runner import JobSecurityMode, RunnerConfig, RunnerScope, RunnerType
from .stack import Environment, StackConfig

__all__ = [
    "NODE_OS",
    "PROJECT",
    "SECRET_KEYS",
    "Application",
    "BuildersConfig",
    "ConfigError",
    "ConfinedProfiles",
    "CredentialsConfig",
    "CredentialsMode",
    "Environment",
    "GitlabConfig",
    "JobQuota",
    "JobSecurityMode",
    "KeySlot",
    "KubernetesConfig",
    "Lifecycle",
    "NetworkConfig",
    "NodeOs",
    "OidcSubject",
    "PreviewConfig",
    "ProfileNames",
    "RegistryConfig",
    "Resources",
    "RunnerConfig",
    "RunnerScope",
    "RunnerType",
    "StackConfig",
    "WarmBuilderConfig",
    "invalid",
    "is_pinned_image",
    "load_config",
    "parse_config",
    "parse_quantity",
    "project_config",
    "project_key",
    "split_image",
    "variable_suffix",
]
