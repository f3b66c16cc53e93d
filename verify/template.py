"""The build template as GitLab includes it: the spec header, the job documents, `$[[ inputs.x ]]`
interpolation and the inputs' `regex` checks. Used by the stubbed script tests (tests/), the real
builds (e2e/) and the build benchmark (bench/).
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from verify.harness import ROOT

TEMPLATE = ROOT / "templates" / "buildkit-build.yml"
INPUT = re.compile(r"\$\[\[\s*inputs\.([a-z0-9_]+)\s*\]\]")


class InputRejected(ValueError):
    """GitLab refuses the include: an input does not match its `regex`."""


def template_documents() -> tuple[dict[str, Any], dict[str, Any]]:
    header, jobs = TEMPLATE.read_text().split("\n---\n", 1)
    return yaml.safe_load(header), yaml.safe_load(jobs)


def interpolate(value: Any, inputs: dict[str, Any]) -> Any:
    """What GitLab does on include: `$[[ inputs.x ]]` replaced by the value (typed when it is the whole string)."""
    if isinstance(value, dict):
        return {interpolate(k, inputs): interpolate(v, inputs) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, inputs) for v in value]
    if isinstance(value, str):
        whole = INPUT.fullmatch(value.strip())
        if whole:
            return inputs[whole[1]]
        return INPUT.sub(lambda m: str(inputs[m[1]]).lower() if isinstance(inputs[m[1]], bool) else str(inputs[m[1]]), value)
    return value


def included_jobs(**given: Any) -> dict[str, Any]:
    header, jobs = template_documents()
    specs = header["spec"]["inputs"]
    inputs = {name: given.get(name, spec.get("default")) for name, spec in specs.items()}
    missing = [name for name, value in inputs.items() if value is None]
    if missing:
        raise InputRejected(f"inputs without default must be given: {missing}")
    for name, spec in specs.items():
        # GitLab matches `regex` with RE2, where `$` is the end of the text (Python: \Z).
        if "regex" in spec and not re.search(spec["regex"].replace("$", r"\Z"), str(inputs[name])):
            raise InputRejected(f"input {name} does not match {spec['regex']}")
    return dict(interpolate(jobs, inputs))


def build_job(app: str, **inputs: Any) -> tuple[str, dict[str, str]]:
    """The job's script (one shell text, as the runner runs it) and its `variables`."""
    inputs.setdefault("environment", "dev")  # the tests' and e2e's default; consumers must name it
    job = included_jobs(app=app, **inputs)[f"build-image-{app}"]
    return "\n".join(job["script"]), {k: str(v) for k, v in job["variables"].items()}
