"""Helm releases: only allow-listed charts, and for the runner chart only the values the stack sets.

A release of any other chart, or of the runner chart from another source (a local path, another
repository, an OCI reference), is a violation: its values could turn on anything. The runner chart
takes settings from many values besides runners.config: environment variables of the manager
(`envVars`, `extraEnv`: the runner fills KUBERNETES_PRIVILEGED, KUBERNETES_CAP_ADD,
KUBERNETES_*_OVERWRITE_ALLOWED... from them when it registers, and config.toml does not override
them), extra objects and containers, cluster-wide RBAC, another config path. So its values must
fit an allow-list of exactly the keys the stack writes; value files and post-renderers, which the pack
cannot read, are refused.
Ref: https://gitlab.com/gitlab-org/charts/gitlab-runner/-/blob/v0.86.0/values.yaml
Ref: https://gitlab.com/gitlab-org/gitlab-runner/-/blob/v18.9.0/commands/register.go (env-filled settings)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from common import resource_policy, stack_policy, to_plain_data
from marks import PSA_ENFORCE
from pulumi_policy import PolicyConfigSchema, ReportViolation, ResourceValidationArgs, StackValidationArgs
from runner_release_policies import checked_runner_config, is_runner_release

HELM_TYPES = ("kubernetes:helm.sh/v3:Release", "kubernetes:helm.sh/v3:Chart", "kubernetes:helm.sh/v4:Chart")
CHARTS_KEY = "allowedCharts"
DEFAULT_CHARTS = [{"chart": "gitlab-runner", "repository": "https://charts.gitlab.io", "versions": ["0.86.0"]}]

LEAF = "leaf"  # any scalar or list the stack places there
MAP = "map"  # a map whose keys are data (node selector labels)
# The runner chart values the stack writes (components/helm_values.py), restated on purpose; a
# contract test ties the two. Fixed values are given as the exact value allowed.
ALLOWED_VALUES: dict[str, Any] = {
    "gitlabUrl": LEAF,
    "concurrent": LEAF,
    "checkInterval": LEAF,
    "unregisterRunners": LEAF,
    "terminationGracePeriodSeconds": LEAF,
    "deploymentLifecycle": {"preStop": {"exec": {"command": LEAF}}},
    "strategy": {"type": "Recreate"},  # one manager at a time: the job quota holds one manager's jobs
    "rbac": {"create": False},
    "serviceAccount": {"create": False, "name": LEAF},
    "securityContext": {
        "allowPrivilegeEscalation": LEAF,
        "readOnlyRootFilesystem": LEAF,
        "runAsNonRoot": LEAF,
        "privileged": LEAF,
        "capabilities": {"drop": LEAF},
        "seccompProfile": {"type": LEAF},
    },
    "podSecurityContext": {"runAsUser": LEAF, "fsGroup": LEAF, "runAsNonRoot": LEAF, "seccompProfile": {"type": LEAF}},
    "resources": {"requests": MAP, "limits": MAP},
    "metrics": {"enabled": LEAF, "port": LEAF, "podMonitor": {"enabled": LEAF}},
    "runners": {"secret": LEAF, "config": LEAF, "jobNamespace": LEAF},
    "podAnnotations": {"gitlab-buildkit-runner/runner-id": LEAF},
    "image": {"registry": "registry.gitlab.com", "image": "gitlab-org/gitlab-runner", "tag": LEAF},
    "nodeSelector": MAP,
}
RESOURCE_NAMES = frozenset({"cpu", "memory", "ephemeral-storage"})
# Every input of the provider's Helm Release (helm.sh/v3) and Chart (helm.sh/v4), and what it means
# for a runner release: "checked" (read by a policy), "refused" (changes what is rendered in a way the
# pack cannot read: value files, post-renderers, values reused from the live release) or "inert" (how
# the release is fetched, awaited or recorded). tests/test_runner_carriers.py fails when the pinned SDK has
# an input this table does not name, so a provider upgrade cannot add an unread carrier of settings.
# Ref: https://www.pulumi.com/registry/packages/kubernetes/api-docs/helm/v3/release/
# Ref: https://www.pulumi.com/registry/packages/kubernetes/api-docs/helm/v4/chart/
HELM_INPUTS: dict[str, str] = {
    **dict.fromkeys(("chart", "version", "repositoryOpts", "values", "namespace", "name"), "checked"),
    **dict.fromkeys(("valueYamlFiles", "postrender", "postRenderer", "reuseValues"), "refused"),
    **dict.fromkeys(
        (
            "allowNullValues", "atomic", "cleanupOnFail", "compat", "createNamespace", "dependencyUpdate", "description",
            "devel", "disableCRDHooks", "disableOpenapiValidation", "disableWebhooks", "forceUpdate", "keyring", "lint",
            "manifest", "maxHistory", "plainHttp", "recreatePods", "renderSubchartNotes", "replace", "resetValues",
            "resourceNames", "resourcePrefix", "skipAwait", "skipCrds", "timeout", "verify", "waitForJobs",
        ),
        "inert",
    ),
}  # fmt: skip


def _allowed_charts(args: ResourceValidationArgs) -> list[dict[str, Any]]:
    return [dict(entry) for entry in (args.get_config() or {}).get(CHARTS_KEY, DEFAULT_CHARTS)]


def _chart_allow_listed(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type not in HELM_TYPES:
        return
    chart = str(args.props.get("chart") or "")
    version = str(args.props.get("version") or "")
    repository = str((args.props.get("repositoryOpts") or {}).get("repo") or "")
    for entry in _allowed_charts(args):
        if entry.get("chart") == chart and entry.get("repository") == repository and version in list(entry.get("versions") or []):
            return
    report_violation(
        f"Helm {args.resource_type.split(':')[-1]} of chart {chart!r} {version!r} from {repository or '(no repository)'!r} is not in "
        f"the policy config's {CHARTS_KEY} (chart name, repository URL and exact version)",
        None,
    )


def value_problems(values: Any, allowed: Any = ALLOWED_VALUES, path: str = "values") -> Iterator[str]:
    """Keys and fixed values outside the allow-list; reads only keys (and the fixed values), so values
    unknown at preview (the runner id) do not fail it."""
    if allowed is LEAF:
        return
    if allowed is MAP:
        if not isinstance(values, Mapping):
            yield f"{path} must be a map"
            return
        if path.endswith(("requests", "limits")):
            for key in values:
                if key not in RESOURCE_NAMES:
                    yield f"{path}.{key} is not a resource the stack sets"
        return
    if not isinstance(allowed, dict):
        if to_plain_data(values) != allowed:
            yield f"{path} must be {allowed!r}"
        return
    if not isinstance(values, Mapping):
        yield f"{path} must be a map"
        return
    for key in values:
        if key not in allowed:
            yield f"{path}.{key} is not a value the stack sets (the chart would take settings from it)"
        elif allowed[key] is not LEAF:  # a LEAF is never read: it may be unknown at preview
            yield from value_problems(values[key], allowed[key], f"{path}.{key}")


def _runner_values(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if not is_runner_release(args.resource_type, args.props):
        return
    for problem in value_problems(args.props.get("values") or {}):
        report_violation(problem, None)
    for field, meaning in HELM_INPUTS.items():
        if meaning == "refused" and args.props.get(field):
            report_violation(f"{field} is set: the pack cannot read what it adds to or changes in the release", None)
    unknown = sorted(key for key in args.props if key not in HELM_INPUTS and not str(key).startswith("__"))
    if unknown:
        report_violation(f"{unknown} are not inputs the pack knows for a Helm release: it cannot tell what they change", None)
    if (args.props.get("values") or {}).get("strategy") is None:
        # The default RollingUpdate runs a draining manager beside the new one: two managers' jobs.
        report_violation("values.strategy is not set: the manager must roll out with {type: Recreate}, one manager at a time", None)
    runners = (args.props.get("values") or {}).get("runners") or {}
    if not str(runners.get("config") or "").strip():
        # Without it the chart falls back to its default config template: any image, no allowed images,
        # no security contexts.
        report_violation("values.runners.config is not set: the chart would use its default runner config instead of the stack's", None)
        return
    config = checked_runner_config(args.props, report_violation)
    runners = (config.data if config else {}).get("runners") or []
    if config is not None and not runners:
        report_violation("values.runners.config has no [[runners]]: not the runner config the stack generates", None)
    for index, runner in enumerate(runners):
        # Any other executor runs job scripts elsewhere: 'shell' inside the manager pod, beside its token.
        if runner.get("executor") != "kubernetes" or not isinstance(runner.get("kubernetes"), Mapping):
            report_violation(
                f"runners[{index}].executor = {runner.get('executor')!r}: every runner must use the 'kubernetes' executor with a "
                "[runners.kubernetes] section (job pods in the job namespace, judged by the runner policies)",
                None,
            )


def _runner_namespaces(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    """The manager runs in a namespace of this stack enforcing 'restricted'; job pods (the chart's
    runners.jobNamespace and every runner's config.toml namespace) in one namespace of this stack."""
    namespaces = {}
    for r in args.resources:
        if r.resource_type == "kubernetes:core/v1:Namespace":
            meta = r.props.get("metadata") or {}
            namespaces[str(meta.get("name"))] = (meta.get("labels") or {}).get(PSA_ENFORCE)
    for release in args.resources:
        if not is_runner_release(release.resource_type, release.props):
            continue
        manager = str(release.props.get("namespace") or "")
        if namespaces.get(manager) != "restricted":
            report_violation(
                f"the runner manager's namespace {manager!r} is not a Namespace of this stack enforcing PSA 'restricted'", release.urn
            )
        config = checked_runner_config(release.props, report_violation, release.urn)
        job_namespaces = {str((r.get("kubernetes") or {}).get("namespace")) for r in (config.data if config else {}).get("runners") or []}
        chart_jobs = ((release.props.get("values") or {}).get("runners") or {}).get("jobNamespace")
        job_namespaces.add(str(chart_jobs))
        for namespace in sorted(job_namespaces):
            if namespace not in namespaces or namespace == manager:
                report_violation(
                    f"job pods would run in namespace {namespace!r}, which is not a job Namespace of this stack "
                    "(runners.jobNamespace and every runner's config.toml namespace must name it)",
                    release.urn,
                )


def policies() -> list:
    return [
        resource_policy(
            "helm-release-allow-listed",
            "Helm releases and charts only of allow-listed charts (name, repository, exact version).",
            f"Use the pinned gitlab-runner chart, or add the chart to the policy config's {CHARTS_KEY}.",
            _chart_allow_listed,
            config_schema=PolicyConfigSchema(
                properties={
                    CHARTS_KEY: {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "chart": {"type": "string"},
                                "repository": {"type": "string"},
                                "versions": {"type": "array", "items": {"type": "string"}},
                            },
                            "required": ["chart", "repository", "versions"],
                        },
                        "default": DEFAULT_CHARTS,
                    }
                }
            ),
        ),
        resource_policy(
            "gitlab-runner-values-allow-listed",
            "The runner release may only set the chart values the stack writes, and must set its runner config: no envVars/extraEnv, "
            "extraObjects, extraContainers, configPath, cluster-wide RBAC, value files, post-renderers or reused values.",
            "Remove the value; runner settings belong in the stack's typed config.toml.",
            _runner_values,
        ),
        stack_policy(
            "gitlab-runner-namespaces",
            "The runner manager runs in a restricted namespace of this stack, its job pods in the stack's job namespace.",
            "Deploy the release into the manager namespace and point runners.jobNamespace and config.toml at the job namespace.",
            _runner_namespaces,
        ),
    ]
