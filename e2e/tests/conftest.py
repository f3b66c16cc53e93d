from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from e2e.build_job import BuildSession, HostError, check_host, fixture_config  # noqa: E402
from e2e.cluster import LocalCluster  # noqa: E402
from e2e.platform import LocalPlatform  # noqa: E402


def pytest_sessionstart(session: pytest.Session) -> None:
    """A machine that cannot run rootless builds stops the tier once, with one message naming every
    missing piece and `make build-host`, instead of one error per test."""
    try:
        check_host()
    except HostError as exc:
        pytest.exit(f"e2e tier stopped: {exc}", returncode=1)


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest) -> Iterator[LocalCluster]:
    """A fresh control plane per test module; stopped even when a test fails. Logs: build/e2e/<module>/."""
    workdir = ROOT / "build" / "e2e" / f"{request.module.__name__}-{int(time.time())}"
    if workdir.exists():
        shutil.rmtree(workdir)
    running = LocalCluster(workdir)
    try:
        yield running.start()
    finally:
        running.stop()


@pytest.fixture(scope="module")
def platform(request: pytest.FixtureRequest) -> Iterator[LocalPlatform]:
    """The real engine's local platform (e2e/platform.py) per test module; every process it started,
    the engine's included, is stopped even when a test fails. Logs: build/e2e/<module>-<time>/."""
    running = LocalPlatform(ROOT / "build" / "e2e" / f"{request.module.__name__.rsplit('.', 1)[-1]}-{int(time.time())}")
    try:
        yield running.start()
    finally:
        running.stop()


@pytest.fixture(scope="module")
def session(request: pytest.FixtureRequest) -> Iterator[BuildSession]:
    """One build session (ECR stand-in, base images, job image) per test module, for the module's APPS;
    stopped, with every process it started, even when a test fails."""
    running = BuildSession(fixture_config(request.module.APPS)).start()
    try:
        yield running
    finally:
        running.stop()
