"""Shared helpers: fail-closed wrappers and small accessors for read-only property proxies."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError

MANDATORY = EnforcementLevel.MANDATORY
ADVISORY = EnforcementLevel.ADVISORY

FAIL_CLOSED = (
    "{detail}. This security check fails closed: a value it must read is unknown during preview, so it "
    "is reported as a violation instead of being skipped. Make the value known at preview (no Output "
    "from another resource) or run `pulumi up` after the dependency exists."
)


def fail_closed(validate: Callable[[Any, ReportViolation], None]) -> Callable[[Any, ReportViolation], None]:
    @functools.wraps(validate)
    def wrapper(args: Any, report_violation: ReportViolation) -> None:
        try:
            validate(args, report_violation)
        except UnknownValueError as exc:
            report_violation(FAIL_CLOSED.format(detail=exc.message), None)

    return wrapper


def to_plain_data(value: Any) -> Any:
    """Deep copy out of the SDK's read-only proxies (raises UnknownValueError on unknowns)."""
    if isinstance(value, Mapping):
        return {k: to_plain_data(value[k]) for k in value}
    if isinstance(value, (list, tuple)) or type(value).__name__ == "_ListProxy":
        return [to_plain_data(v) for v in value]
    return value


def json_document(value: Any) -> Any:
    """A policy document that may arrive as a JSON string or as an object."""
    value = to_plain_data(value)
    if isinstance(value, str):
        return json.loads(value)
    return value


def resource_policy(
    name: str,
    description: str,
    remediation: str,
    validate: Callable[[ResourceValidationArgs, ReportViolation], None],
    level: EnforcementLevel = MANDATORY,
    config_schema: PolicyConfigSchema | None = None,
) -> ResourceValidationPolicy:
    return ResourceValidationPolicy(
        name=name,
        description=description,
        validate=fail_closed(validate),
        enforcement_level=level,
        config_schema=config_schema,
        remediation_steps=remediation,
    )


def stack_policy(
    name: str,
    description: str,
    remediation: str,
    validate: Callable[[StackValidationArgs, ReportViolation], None],
    level: EnforcementLevel = MANDATORY,
    config_schema: PolicyConfigSchema | None = None,
) -> StackValidationPolicy:
    return StackValidationPolicy(
        name=name,
        description=description,
        validate=fail_closed(validate),
        enforcement_level=level,
        remediation_steps=remediation,
        config_schema=config_schema,
    )
