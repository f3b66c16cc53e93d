"""gitlab-runner outside the stack's release: a workload running the runner, or a ConfigMap or Secret
holding its config.toml, would run jobs from a config no runner policy reads (any image, privileged,
host paths). The stack deploys the runner only through its Helm release, whose values the runner
policies read; everything else that carries the runner or its config is refused.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator, Mapping
from typing import Any

from common import resource_policy, to_plain_data
from kubernetes_kinds import POD_FIELDS, is_kind, objects, pods
from pulumi_policy import ReportViolation, ResourceValidationArgs
from pulumi_policy.proxy import UnknownValueError

POLICY = "gitlab-runner-only-through-the-release"
# A runner config.toml: its [[runners]] array (any spacing or case, as TOML tables and the runner's
# case-insensitive decoding allow) or its [runners.*] tables.
RUNNER_TABLE = re.compile(r"^\s*\[\[?\s*\"?runners\"?\s*[\].]", re.IGNORECASE | re.MULTILINE)


def _known(mapping: Mapping[str, Any], key: str) -> Any:
    """mapping[key] as plain data, or None while it is unknown (at preview: judged again at `pulumi up`)."""
    try:
        return to_plain_data(mapping.get(key))
    except UnknownValueError:
        return None


def _texts(container: Mapping[str, Any]) -> Iterator[str]:
    yield str(_known(container, "image") or "")
    for field in ("command", "args"):
        for item in _known(container, field) or []:
            yield str(item)


def _runner_workloads(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    for location, spec, _ in pods(args.resource_type, args.props):
        for field in POD_FIELDS:
            try:
                containers = list(spec.get(field) or [])
            except UnknownValueError:
                containers = []  # judged again at `pulumi up`, when it is known
            for container in containers:
                if isinstance(container, Mapping) and any("gitlab-runner" in text.lower() for text in _texts(container)):
                    where = f"{location}.spec.{field}[{_known(container, 'name')!r}]".lstrip(".")
                    report_violation(
                        f"{where} runs gitlab-runner ({_known(container, 'image')!r}): the runner is deployed only by the stack's "
                        "Helm release, whose config the runner policies read",
                        None,
                    )


def _text(value: Any, base64_encoded: bool) -> str:
    if base64_encoded and isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True).decode("utf-8", "replace")
        except (binascii.Error, ValueError):
            return value
    return str(value)


# (kind, field) -> whether its values are base64: a ConfigMap's data and a Secret's stringData are text.
DATA_FIELDS = {("ConfigMap", "data"): False, ("ConfigMap", "binaryData"): True, ("Secret", "data"): True, ("Secret", "stringData"): False}


def _runner_config_objects(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    for (kind, field), encoded in DATA_FIELDS.items():
        if not is_kind(args.resource_type, "core", kind, args.props):
            continue
        for where, obj in objects(args.resource_type, args.props):
            try:
                data = obj.get(field)
                keys = list(data) if isinstance(data, Mapping) else []
            except UnknownValueError:
                keys = []  # all of it unknown at preview: judged at `pulumi up`
            for key in keys:
                value = _known(data, key)  # an unknown value is judged by its key now, by its text at `pulumi up`
                if str(key).lower().endswith(".toml") or RUNNER_TABLE.search(_text(value or "", encoded)):
                    name = _known(obj.get("metadata") or {}, "name")
                    report_violation(
                        f"{kind} {name!r}{f' {where}' if where else ''}: {field}.{key} holds a gitlab-runner config; runner "
                        "config comes only from the stack's Helm release (values.runners.config)",
                        None,
                    )


def policies() -> list:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        _runner_workloads(args, report_violation)
        _runner_config_objects(args, report_violation)

    return [
        resource_policy(
            POLICY,
            "gitlab-runner runs only from the stack's Helm release: no other workload runs it, no ConfigMap or Secret holds its config.toml.",
            "Deploy runners with the stack's GitlabRunner component; runner settings belong in its typed config.",
            validate,
        )
    ]
