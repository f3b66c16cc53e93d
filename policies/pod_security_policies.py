"""Pod Security Standards, one policy per control, over every place a pod spec lives."""

from __future__ import annotations

from common import ADVISORY, MANDATORY, resource_policy
from pod_security_controls import CONTROLS, Control, pod_of
from pulumi_policy import ReportViolation, ResourceValidationArgs, ResourceValidationPolicy


def _validator(control: Control):
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        pod = pod_of(args.resource_type, args.props)
        if pod is None:
            return
        spec, meta = pod
        for message in control.check(spec, meta):
            report_violation(f"{args.resource_type.split(':')[-1]} {args.name}: {message}", None)

    return validate


def policies() -> list[ResourceValidationPolicy]:
    # Baseline controls are mandatory; restricted ones advisory unless the policy config raises them
    # (the job namespace can never be restricted: rootless BuildKit needs escalation).
    return [
        resource_policy(
            control.name,
            f"[PSS {control.level}] {control.description}",
            control.remediation,
            _validator(control),
            MANDATORY if control.level == "baseline" else ADVISORY,
        )
        for control in CONTROLS
    ]
