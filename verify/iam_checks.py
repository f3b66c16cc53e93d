"""IAM documents through real validators: policy_sentry (actions exist, ARN fits) and parliament (lint)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any


def _arn_regex(arn_format: str) -> re.Pattern[str]:
    parts = re.split(r"(\$\{[A-Za-z]+\})", arn_format)
    return re.compile("^" + "".join("[^:]+" if p.startswith("${") else re.escape(p) for p in parts) + "$")


def sentry_problems(document: dict[str, Any]) -> list[str]:
    """Every action must exist in policy_sentry's database and accept the statement's resources.

    Its CLI prints {} and exits 0 for an unknown action, so the Python API result is checked instead.
    """
    os.environ.setdefault("HOME", tempfile.gettempdir())
    from policy_sentry.querying.actions import get_action_data

    problems = []
    for index, statement in enumerate(document.get("Statement", [])):
        actions = statement.get("Action")
        resources = statement.get("Resource")
        for action in actions if isinstance(actions, list) else [actions]:
            service, _, name = str(action).partition(":")
            if "*" in str(action):  # get_action_data expands wildcards; a wildcard is not one action
                problems.append(f"Statement[{index}]: {action} is not a known IAM action (wildcard)")
                continue
            data = get_action_data(service, name).get(service, [])
            if not data:
                problems.append(f"Statement[{index}]: {action} is not a known IAM action")
                continue
            formats = {d["resource_arn_format"] for d in data}
            for resource in resources if isinstance(resources, list) else [resources]:
                if resource == "*":
                    if "*" not in formats:
                        problems.append(f"Statement[{index}]: {action} is resource-level ({sorted(formats)}) but granted on '*'")
                elif not any(f != "*" and _arn_regex(f).match(resource) for f in formats):
                    problems.append(f"Statement[{index}]: {action} does not apply to {resource} (formats {sorted(formats)})")
    return problems


def parliament_problems(document: dict[str, Any], workdir: Path | None = None) -> list[str]:
    """`parliament --files <file>` (exit 1 on findings); `--file` needs a TTY and breaks in CI."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(workdir or tmp) / "policy.json"
        path.write_text(json.dumps(document))
        result = subprocess.run(
            [str(Path(sys.executable).with_name("parliament")), "--files", str(path)],
            capture_output=True,
            text=True,
            env={**os.environ, "HOME": tmp},
            timeout=120,
        )
    if result.returncode == 0 and not result.stdout.strip():
        return []
    return [line for line in (result.stdout + result.stderr).splitlines() if line.strip()] or [f"parliament exited {result.returncode}"]
