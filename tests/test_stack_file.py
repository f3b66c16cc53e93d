"""The stack-file reader of verify/: plain config only, with clear errors instead of tracebacks or hangs."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from verify.harness import ROOT, load_config_file
from verify.stack_file import MAX_NODES, StackFileError, read_stack_file

GOOD = "config:\n  gitlab-buildkit-runner:environment: dev\n"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "Pulumi.test.yaml"
    path.write_text(text)
    return path


def test_plain_file_reads() -> None:
    assert load_config_file(ROOT / "Pulumi.prod.yaml")["environment"] == "prod"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (
            GOOD + "  gitlab-buildkit-runner:environment: prod\n",
            "line 3: duplicate key 'gitlab-buildkit-runner:environment' (first at line 2)",
        ),
        ("config:\n  a:\n    x: 1\n    x: 2\n", "line 4: duplicate key 'x' (first at line 3)"),
        ("config: {}\nconfig: {}\n", "duplicate key 'config'"),
        (
            "config:\n  a: !!python/object/apply:os.system [echo hi]\n",
            "tag 'tag:yaml.org,2002:python/object/apply:os.system' is not allowed",
        ),
        ("config:\n  a: !env HOME\n", "tag '!env' is not allowed"),
        ("config:\n  a: !!binary aGk=\n", "tag 'tag:yaml.org,2002:binary' is not allowed"),
        ("config:\n  a: !!set {x, y}\n", "tag 'tag:yaml.org,2002:set' is not allowed"),
        ("config: [unclosed\n", "not valid YAML"),
        ("- just\n- a list\n", "must be a mapping with a 'config:' key"),
        ("config:\n  a: &x [*x]\n", "an alias refers to a value that contains it"),
    ],
)
def test_unsafe_or_ambiguous_files_fail_with_the_line(tmp_path: Path, text: str, fragment: str) -> None:
    with pytest.raises(StackFileError) as caught:
        read_stack_file(write(tmp_path, text))
    assert str(caught.value).startswith(str(tmp_path / "Pulumi.test.yaml") + ": ")
    assert fragment in str(caught.value)


def test_alias_bomb_stops_quickly(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]  # 10**10 values expanded
    path = write(tmp_path, "\n".join(lines) + "\nconfig:\n  k: *a9\n")
    started = time.perf_counter()
    with pytest.raises(StackFileError, match=rf"more than {MAX_NODES} values once aliases are expanded"):
        read_stack_file(path)
    assert time.perf_counter() - started < 5  # a guard against hanging, not a benchmark


def test_small_aliases_are_fine(tmp_path: Path) -> None:
    data = read_stack_file(write(tmp_path, "base: &tags [buildkit, dev]\nconfig:\n  t: *tags\n"))
    assert data["config"]["t"] == ["buildkit", "dev"]


def test_synth_reports_a_bad_config_file_without_a_traceback(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD + "  gitlab-buildkit-runner:environment: prod\n")
    result = subprocess.run(
        [sys.executable, "-m", "verify.synth", "--stack", "dev", "--config-file", str(path), "--build-dir", str(tmp_path / "b")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 2
    assert "duplicate key 'gitlab-buildkit-runner:environment'" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
