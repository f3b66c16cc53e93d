"""Pod Security Standards, one policy per control, over every place a pod spec lives: every workload
kind in any API version, its `<Kind>Patch` and `<Kind>List`; and a policy that rejects pod specs the
pack cannot place (kinds it does not model)."""

from __future__ import annotations

from common import ADVISORY, MANDATORY, resource_policy
from kubernetes_kinds import pods, unmodelled_pod_specs
from pod_security_controls import CONTROLS, Control, localhost_profiles
from pulumi_policy import ReportViolation, ResourceValidationArgs, ResourceValidationPolicy


def _validator(control: Control):
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        kind = args.resource_type.split(":")[-1]
        for location, spec, meta in pods(args.resource_type, args.props):
            where = f"{kind} {args.name}" + (f" {location}" if location else "")
            for message in control.check(spec, meta):
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
        for found in localhost_profiles(spec, meta):
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
