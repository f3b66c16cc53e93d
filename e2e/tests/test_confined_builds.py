"""Rootless BuildKit under a seccomp profile applied the way a node applies it: the template's own
script inside a runc container made like the pod's build container (e2e/confined.py), against the ECR
stand-in. Proves what components/build_seccomp.py states: RuntimeDefault alone breaks the build,
RuntimeDefault plus BUILD_SYSCALLS builds every fixture app, and each of those syscalls is needed.
Needs root (runc makes the container; the job inside runs as UID 1000).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from components.build_seccomp import BUILD_SYSCALLS, WHY, confined_profile, runtime_default
from components.confined_profiles import seccomp_profile_text
from e2e import confined
from e2e.build_job import BuildSession, JobResult, Pipeline, checkout

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="runc needs root to make the build container (CI runs as root)")

APPS = ["go-service", "deps-install", "many-layers"]


_jobs = iter(range(100, 10_000))


def build_in_container(session: BuildSession, app: str, source: Path, profile: dict[str, object] | None) -> JobResult:
    """A job with its own ref and default branch, so no cache hides a RUN step from the profile."""
    assert session.ecr is not None
    job = next(_jobs)
    ref = f"confined-{job}"
    pipeline = Pipeline(ref_slug=ref, default_branch=ref, sha=f"{job:040d}", job_id=job)
    return session.run(app, source, pipeline, inputs={"build_args": f"BASE={session.ecr.host}"}, container=True, seccomp=profile)


def test_the_pinned_runtime_default_is_what_containerd_generates() -> None:
    # e2e/seccompgen, built against containerd v2.1.4, for the build container's capabilities.
    assert confined.runtime_default() == runtime_default()
    assert json.loads(json.dumps(runtime_default()))["defaultAction"] == "SCMP_ACT_ERRNO"


def test_the_container_builds_unconfined(session: BuildSession, tmp_path: Path) -> None:
    """The harness itself: without a profile the build passes, so the failures below are the profile's."""
    result = build_in_container(session, "deps-install", checkout("deps-install", tmp_path / "src"), None)
    assert result.returncode == 0, result.output


def test_runtime_default_alone_breaks_the_build_with_the_templates_hint(session: BuildSession, tmp_path: Path) -> None:
    result = build_in_container(session, "deps-install", checkout("deps-install", tmp_path / "src"), runtime_default())
    assert result.returncode != 0
    assert WHY["clone"][1] in result.output, result.output
    assert "seccomp profile blocks the user namespace" in result.output


@pytest.mark.parametrize("app", APPS)
def test_the_confined_profile_builds_every_fixture_app(session: BuildSession, tmp_path: Path, app: str) -> None:
    # The profile exactly as the stack's node bootstrap writes it (components/confined_profiles.py).
    result = build_in_container(session, app, checkout(app, tmp_path / "src"), json.loads(seccomp_profile_text()))
    assert result.returncode == 0, result.output
    assert result.leftover == []


@pytest.mark.parametrize("syscall", BUILD_SYSCALLS)
def test_each_added_syscall_is_needed(session: BuildSession, tmp_path: Path, syscall: str) -> None:
    """deps-install has RUN steps, so runc runs inside the build: every syscall on the list is exercised."""
    profile = confined_profile(syscalls=tuple(s for s in BUILD_SYSCALLS if s != syscall))
    result = build_in_container(session, "deps-install", checkout("deps-install", tmp_path / "src"), profile)
    assert result.returncode != 0, f"the build passed without {syscall}: the list is not minimal"
    assert WHY[syscall][1] in result.output, result.output
    # ... and the template points at the confined mode's node bootstrap (an outdated profile on the node)
    assert "bootstrap" in result.output.split("BUILD FAILED", 1)[-1], result.output
