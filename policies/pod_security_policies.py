"""Pod Security Standards, one policy per control, over every place a pod spec lives: every workload
kind in any API version, its `<Kind>Patch` and `<Kind>List`; and a policy that rejects pod specs the
pack cannot place (kinds it does not model)."""

from __future__ import annotations

from typing import Any

from common import ADVISORY, MANDATORY, resource_policy, to_plain_data
from kubernetes_kinds import pods, unmodelled_pod_specs
from pod_security_controls import CONTROLS, Control, localhost_profiles
from pulumi_policy import ReportViolation, ResourceValidationArgs, ResourceValidationPolicy
from warm_builder_policies import DAEMON_CONTAINER, claims_daemon

# The profile controls a warm BuildKit daemon's container is judged by elsewhere: `warm-builders-as-designed`
# (warm_builder_policies) checks every pod that claims to be one, and admits on its `buildkitd` container
# exactly the profiles the job namespace's marks admit for build containers (Localhost in 'confined',
# Unconfined in 'unconfined'), nothing anywhere else.
DAEMON_PROFILE_CONTROLS = frozenset({"kubernetes-pod-apparmor", "kubernetes-pod-seccomp-baseline", "kubernetes-pod-seccomp-restricted"})


def _without_daemon_profiles(spec: Any, meta: Any) -> Any:
    """The pod spec with the daemon container's seccomp/AppArmor fields left out, for a pod that claims to be
    a warm daemon; any other pod unchanged."""
    if not claims_daemon({}, {"labels": to_plain_data((meta or {}).get("labels") or {})}):
        return spec
    plain = to_plain_data(spec)
    for container in plain.get("containers") or []:
        if container.get("name") == DAEMON_CONTAINER and isinstance(container.get("securityContext"), dict):
            container["securityContext"].pop("seccompProfile", None)
            container["securityContext"].pop("appArmorProfile", None)
    return plain


def _validator(control: Control):
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        kind = args.resource_type.split(":")[-1]
        for location, spec, meta in pods(args.resource_type, args.props):
            where = f"{kind} {args.name}" + (f" {location}" if location else "")
            checked = _without_daemon_profiles(spec, meta) if control.name in DAEMON_PROFILE_CONTROLS else spec
            for message in control.check(checked, meta):
                report_violation(f"{where}: {message}", None)

    return validate


def _understood(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    for location in unmodelled_pod_specs(args.resource_type, args.props):
        report_violation(
            f"{args.resource_type} {args.name} carries a pod spec at {location}, in a kind or place the pack does not model: "
            "its Pod Security controls cannot be checked",
            None,
        )


def _no_localhost_profiles(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    kind = args.resource_type.split(":")[-1]
    for location, spec, meta in pods(args.resource_type, args.props):
        where = f"{kind} {args.name}" + (f" {location}" if location else "")
        for found in localhost_profiles(_without_daemon_profiles(spec, meta), meta):
            report_violation(
                f"{where}: {found.describe()}: the stack's only Localhost profiles are for the job pods' build container, "
                "which the runner creates (runners.config); no workload the stack manages may name one",
                None,
            )


def policies() -> list[ResourceValidationPolicy]:
    # Baseline controls are mandatory; restricted ones advisory unless the policy config raises them
    # (the job namespace can never be restricted: rootless BuildKit needs escalation).
    return [
        *(
            resource_policy(
                control.name,
                f"[PSS {control.level}] {control.description}",
                control.remediation,
                _validator(control),
                MANDATORY if control.level == "baseline" else ADVISORY,
            )
            for control in CONTROLS
        ),
        resource_policy(
            "kubernetes-pod-localhost-profiles",
            "Workloads the stack manages must not use Localhost seccomp/AppArmor profiles (field or annotation): a node file "
            "the pack cannot see could allow anything. Only the job pods' build container may, through the runner's config.",
            "Use RuntimeDefault; the confined job security mode sets the build container's Localhost profiles itself.",
            _no_localhost_profiles,
        ),
        resource_policy(
            "kubernetes-workload-kind-understood",
            "Every pod spec must sit in a workload kind the pack models (Pod, PodTemplate, ReplicationController, Deployment, "
            "StatefulSet, DaemonSet, ReplicaSet, Job, CronJob, their Patch and List variants); any other carrier fails closed.",
            "Use a modelled workload kind, or extend policies/kubernetes_kinds.py with the kind's pod template path.",
            _understood,
        ),
    ]
