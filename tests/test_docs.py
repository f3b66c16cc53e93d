"""Docs stay true: the config reference is generated, every key is described, CI runs the README's command."""

from __future__ import annotations

import re

import yaml

from components.config import StackConfig
from verify.config_reference import main as config_reference
from verify.config_reference import rows
from verify.harness import ROOT


def test_config_reference_is_current() -> None:
    assert config_reference(["--check"]) == 0, "run `make docs`"


def test_every_config_key_has_a_description() -> None:
    missing = [key for key, _, _, description in rows(StackConfig) if not description]
    assert missing == []


def test_pulumi_yaml_is_a_valid_python_project_using_the_venv() -> None:
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    assert project["name"] == "gitlab-buildkit-runner"
    assert project["runtime"] == {"name": "python", "options": {"toolchain": "pip", "virtualenv": ".venv"}}
    for key, declaration in project["config"].items():
        assert declaration["type"] in ("string", "integer", "boolean", "array") and declaration["description"], key


def test_ci_runs_the_readme_test_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    for target in ("test", "e2e"):
        assert re.search(rf"^make {target}\b", readme, re.MULTILINE), f"README must give `make {target}`"
        assert re.search(rf"^make {target}$", ci, re.MULTILINE), f".ci/run must run `make {target}`"
    assert "set -euo pipefail" in ci


def test_every_stack_file_is_valid_config() -> None:
    from components.config import parse_config
    from verify.harness import load_stack_file

    for path in ROOT.glob("Pulumi.*.yaml"):
        stack = path.name.split(".")[1]
        # A stack named after an environment must declare it (parse_config refuses otherwise); the
        # demo's `local` stack runs the dev rules.
        assert parse_config(load_stack_file(stack), stack=stack).environment == (stack if stack in ("dev", "staging", "prod") else "dev")


def test_confined_mode_docs_state_the_measured_facts() -> None:
    """The docs' syscall table and node-OS table say what the code measures and decides."""
    from components.build_seccomp import WHY
    from components.config import NODE_OS

    doc = (ROOT / "docs" / "confined-mode.md").read_text()
    readme = (ROOT / "README.md").read_text()
    for syscall, (_, symptom) in WHY.items():
        assert f"| `{syscall}` |" in doc and f"`{symptom}`" in doc, syscall
    for node_os, facts in NODE_OS.items():
        row = next((line for line in readme.splitlines() if f"(`{node_os}`) |" in line), "")
        assert row, node_os
        assert ("*refused*" in row) == bool(facts.confined or facts.baseline), node_os
