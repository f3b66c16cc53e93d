"""The gitlab-runner Helm release: its config.toml, read as the runner reads it, and its manager pod."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from common import ADVISORY, resource_policy, stack_policy, to_plain_data
from marks import (
    APPARMOR_PROFILE_ANNOTATION,
    APPARMOR_PROFILE_PATTERN,
    JOB_SECURITY_MODE_ANNOTATION,
    PSA_ENFORCE,
    SECCOMP_PROFILE_ANNOTATION,
    SECCOMP_PROFILE_PATTERN,
    is_profile_name,
)
from pulumi_policy import PolicyConfigSchema, ReportViolation, ResourceValidationArgs, StackValidationArgs
from runner_config_checks import (
    LOCALHOST_POLICY,
    ConfinedNamespace,
    RunnerConfig,
    manager_context_problems,
    parse_runner_config,
    runner_config_problems,
)

RELEASE_TYPES = ("kubernetes:helm.sh/v3:Release", "kubernetes:helm.sh/v3:Chart", "kubernetes:helm.sh/v4:Chart")
UNCONFINED_POLICY = "gitlab-runner-unconfined-profiles"

RUNNER_POLICIES = {
    "gitlab-runner-privileged": (
        "No job container may run privileged (or as UID 0 at pod level).",
        "Set privileged = false everywhere in runners.config.",
    ),
    "gitlab-runner-privilege-escalation": (
        "Helper and service containers must set allow_privilege_escalation = false; only rootless BuildKit's build container may keep it.",
        "Set allow_privilege_escalation = false in the helper/service container security contexts.",
    ),
    "gitlab-runner-capabilities": ("Job containers must not add capabilities.", "Remove cap_add and capabilities.add."),
    "gitlab-runner-overwrites": (
        "Jobs must not be able to overwrite namespace, service account, token, annotations, labels, node placement or helper image.",
        "Remove the *_overwrite_allowed settings.",
    ),
    "gitlab-runner-host-volumes": ("Job pods must not mount host paths.", "Remove [[runners.kubernetes.volumes.host_path]]."),
    "gitlab-runner-config-understood": (
        "Every key of runners.config must be a setting the pack models (keys matched case-insensitively, as the runner does).",
        "Remove the setting, or model it in policies/runner_config_checks.py SCHEMA with its checks.",
    ),
    "gitlab-runner-pod-spec-patches": (
        "pod_spec patches, applied to the job pod as the runner applies them, must not add any Pod Security baseline violation.",
        "Remove the patch; set container settings through the native config.toml fields.",
    ),
}


# The policies that grant rootless BuildKit its exceptions accept images from Docker Hub, and from the
# registries listed here (exact prefixes such as 'registry.example.com/mirror', no wildcards).
MIRRORS_KEY = "trustedBuildkitMirrors"
MIRRORS_SCHEMA = PolicyConfigSchema(
    properties={
        MIRRORS_KEY: {
            "type": "array",
            "items": {"type": "string", "pattern": "^[a-z0-9]+([.-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*$"},
            "default": [],
        }
    }
)
EXCEPTION_POLICIES = (
    "gitlab-runner-privilege-escalation",
    "gitlab-runner-buildkit-needs",
    "gitlab-runner-unconfined-profiles",
    LOCALHOST_POLICY,
)


def trusted_mirrors(args: ResourceValidationArgs | StackValidationArgs) -> list[str]:
    return [str(m) for m in (args.get_config() or {}).get(MIRRORS_KEY, [])]


def is_runner_release(resource_type: str, props: Mapping[str, Any]) -> bool:
    """Any Helm release or chart of gitlab-runner, however the chart is named (repo/name, a local path, a
    .tgz, an OCI reference): the runner checks read it whether or not the chart allow-list admits it."""
    return resource_type in RELEASE_TYPES and "gitlab-runner" in str(props.get("chart", "")).lower()


def runner_config(props: Mapping[str, Any]) -> RunnerConfig:
    values = props.get("values") or {}
    text = (values.get("runners") or {}).get("config")
    if text is None:
        return RunnerConfig({}, [])
    return parse_runner_config(str(text))


def checked_runner_config(props: Mapping[str, Any], report_violation: ReportViolation, urn: str | None = None) -> RunnerConfig | None:
    """The config as the runner reads it, or None after reporting it: what cannot be read cannot pass a check."""
    try:
        return runner_config(props)
    except ValueError as exc:
        report_violation(f"runners.config cannot be read as the runner reads it, so it cannot be checked: {exc}", urn)
        return None


def _config_policy(name: str, description: str, remediation: str):
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        if not is_runner_release(args.resource_type, args.props):
            return
        config = checked_runner_config(args.props, report_violation)
        if config is None:
            return
        mirrors = trusted_mirrors(args) if name in EXCEPTION_POLICIES else []
        for message in runner_config_problems(config, (), mirrors).get(name, []):
            report_violation(message, None)

    return resource_policy(name, description, remediation, validate, config_schema=MIRRORS_SCHEMA if name in EXCEPTION_POLICIES else None)


def _manager_context(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if not is_runner_release(args.resource_type, args.props):
        return
    values = args.props.get("values") or {}
    # Only the keys checked: other values (e.g. an annotation with the runner id) are unknown on a
    # stack's first preview and must not fail this policy.
    checked = {key: to_plain_data(values.get(key)) for key in ("securityContext", "podSecurityContext", "rbac")}
    for message in manager_context_problems(checked):
        report_violation(f"runner manager: {message}", None)


def _buildkit_needs(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if not is_runner_release(args.resource_type, args.props):
        return
    config = checked_runner_config(args.props, report_violation)
    problems = runner_config_problems(config, (), trusted_mirrors(args)) if config is not None else {}
    for message in problems.get("gitlab-runner-buildkit-needs", []):
        report_violation(message, None)


def _releases(args: StackValidationArgs) -> Iterator[Any]:
    return (r for r in args.resources if is_runner_release(r.resource_type, r.props))


def namespace_marks(args: StackValidationArgs) -> Iterator[tuple[str, Mapping[str, Any], Mapping[str, Any]]]:
    """(name, annotations, labels) of every Namespace resource (never a patch): where the stack's marks live."""
    for r in args.resources:
        if r.resource_type == "kubernetes:core/v1:Namespace":
            meta = r.props.get("metadata") or {}
            yield str(meta.get("name")), meta.get("annotations") or {}, meta.get("labels") or {}


def acknowledged_unconfined_namespaces(args: StackValidationArgs) -> set[str]:
    return {
        name
        for name, marks, labels in namespace_marks(args)
        if marks.get(JOB_SECURITY_MODE_ANNOTATION) == "unconfined" and labels.get(PSA_ENFORCE) == "privileged"
    }


def confined_namespaces(args: StackValidationArgs) -> dict[str, ConfinedNamespace]:
    """Job namespaces marked 'confined', enforcing PSA baseline or restricted, whose profile marks are
    well-formed names: {namespace: its exact profile names}."""
    found = {}
    for name, marks, labels in namespace_marks(args):
        if marks.get(JOB_SECURITY_MODE_ANNOTATION) != "confined" or labels.get(PSA_ENFORCE) not in ("baseline", "restricted"):
            continue
        seccomp = marks.get(SECCOMP_PROFILE_ANNOTATION)
        apparmor = marks.get(APPARMOR_PROFILE_ANNOTATION)
        if not is_profile_name(seccomp, SECCOMP_PROFILE_PATTERN):
            continue
        if apparmor is not None and not is_profile_name(apparmor, APPARMOR_PROFILE_PATTERN):
            continue
        found[name] = ConfinedNamespace(seccomp, apparmor)
    return found


def _profile_policy(policy: str):
    """A stack policy reporting `policy`'s problems of every runner release, judged against the job
    namespaces' marks (acknowledged unconfined, confined with its profile names)."""

    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        unconfined, confined = acknowledged_unconfined_namespaces(args), confined_namespaces(args)
        for release in _releases(args):
            config = checked_runner_config(release.props, report_violation, release.urn)
            problems = runner_config_problems(config, unconfined, trusted_mirrors(args), confined) if config is not None else {}
            for message in problems.get(policy, []):
                report_violation(message, release.urn)

    return validate


def policies() -> list:
    result = [_config_policy(name, description, remediation) for name, (description, remediation) in RUNNER_POLICIES.items()]
    result.append(
        resource_policy(
            "gitlab-runner-manager-restricted",
            "The runner manager pod must satisfy PSS restricted and the chart must not create its wildcard Role.",
            "Set securityContext/podSecurityContext as in components/helm_values.py and rbac.create: false.",
            _manager_context,
        )
    )
    result.append(
        resource_policy(
            "gitlab-runner-buildkit-needs",
            "Rootless BuildKit needs escalation and SETUID/SETGID on its build container; settings that break it are reported.",
            "Keep allow_privilege_escalation unset/true and do not drop ALL on the build container.",
            _buildkit_needs,
            ADVISORY,
            config_schema=MIRRORS_SCHEMA,
        )
    )
    result.append(
        stack_policy(
            UNCONFINED_POLICY,
            "Unconfined seccomp/AppArmor on job containers only for the BuildKit build container in a job namespace acknowledged for the 'unconfined' mode.",
            "Use jobSecurityMode 'baseline', or set jobSecurityMode 'unconfined' with acknowledgeUnconfined: true.",
            _profile_policy(UNCONFINED_POLICY),
            config_schema=MIRRORS_SCHEMA,
        )
    )
    result.append(
        stack_policy(
            LOCALHOST_POLICY,
            "Localhost seccomp/AppArmor profiles on job pods only on the rootless BuildKit build container, only the exact "
            "profiles its job namespace names for the 'confined' mode.",
            "Use jobSecurityMode 'confined' (the stack sets the profiles and the marks); never name another Localhost profile.",
            _profile_policy(LOCALHOST_POLICY),
            config_schema=MIRRORS_SCHEMA,
        )
    )
    return result
