"""The confined seccomp profile as data: containerd's pinned RuntimeDefault plus exactly the measured
syscalls (the measurement itself: e2e/tests/test_confined_builds.py)."""

from __future__ import annotations

import re
from typing import Any

from components.build_seccomp import BUILD_SYSCALLS, RUNTIME_DEFAULT, WHY, confined_profile, runtime_default

# OCI runtime-spec seccomp actions and operators (config-linux.md#seccomp).
ACTIONS = {
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_TRAP",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_LOG",
    "SCMP_ACT_NOTIFY",
}
OPERATORS = {"SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ"}


def oci_seccomp_problems(profile: dict[str, Any]) -> list[str]:
    problems = []
    if profile.get("defaultAction") not in ACTIONS:
        problems.append(f"defaultAction {profile.get('defaultAction')!r}")
    if not all(isinstance(a, str) and a.startswith("SCMP_ARCH_") for a in profile.get("architectures", [])):
        problems.append("architectures")
    for index, rule in enumerate(profile.get("syscalls", [])):
        names = rule.get("names")
        if not names or not all(isinstance(n, str) and re.fullmatch(r"[a-z0-9_]+", n) for n in names):
            problems.append(f"syscalls[{index}].names {names!r}")
        if rule.get("action") not in ACTIONS:
            problems.append(f"syscalls[{index}].action {rule.get('action')!r}")
        for arg in rule.get("args") or []:
            if arg.get("op") not in OPERATORS or not isinstance(arg.get("index"), int) or not isinstance(arg.get("value"), int):
                problems.append(f"syscalls[{index}].args {arg!r}")
    return problems


def test_the_runtime_default_is_pinned_and_valid() -> None:
    assert RUNTIME_DEFAULT.name == "containerd-v2.1.4-runtime-default.json"
    assert oci_seccomp_problems(runtime_default()) == []
    assert runtime_default()["defaultAction"] == "SCMP_ACT_ERRNO"


def test_the_profile_is_valid_and_differs_from_the_default_by_exactly_the_added_list() -> None:
    default, profile = runtime_default(), confined_profile()
    assert oci_seccomp_problems(profile) == []
    assert {k: v for k, v in profile.items() if k != "syscalls"} == {k: v for k, v in default.items() if k != "syscalls"}
    assert profile["syscalls"][: len(default["syscalls"])] == default["syscalls"]
    assert profile["syscalls"][len(default["syscalls"]) :] == [{"names": sorted(BUILD_SYSCALLS), "action": "SCMP_ACT_ALLOW"}]


def test_every_added_syscall_is_one_the_default_does_not_allow_unconditionally() -> None:
    unconditional = {
        name
        for rule in runtime_default()["syscalls"]
        if rule["action"] == "SCMP_ACT_ALLOW" and not rule.get("args") and not rule.get("includes") and not rule.get("excludes")
        for name in rule["names"]
    }
    assert sorted(set(BUILD_SYSCALLS) & unconditional) == []


def test_each_added_syscall_says_why_and_how_its_absence_shows() -> None:
    assert tuple(sorted(WHY)) == BUILD_SYSCALLS
    markers = [marker for _, marker in WHY.values()]
    assert len(set(markers)) == len(markers) and all(markers)
