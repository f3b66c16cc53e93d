"""Warm builders, real: long-lived rootless buildkitd daemons on 127.0.0.1 with mTLS, one per project,
their certificates and flags from the stack's own code (e2e/warm_daemon.py says what differs from the
StatefulSet), used by the template's own script as the jobs of two projects run it.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Iterator

import pytest

from components.builder_certificates import issue
from components.config import WarmBuilderConfig
from e2e.build_job import BuildSession, JobResult, Pipeline, checkout
from e2e.tests.test_real_builds import is_cache_hit, steps
from e2e.warm_daemon import WarmDaemon

APPS = ["cache-mount", "go-service"]  # two projects: acme/cache-mount and acme/go-service


def build(
    session: BuildSession,
    app: str,
    daemon_variables: dict[str, str],
    pipeline: Pipeline,
    tmp_path_factory: pytest.TempPathFactory,
    *,
    busybox: bool = False,
    changes: int = 0,
    **build_args: str,
) -> JobResult:
    assert session.ecr is not None
    source = checkout(app, tmp_path_factory.mktemp(app), changes=changes)
    args = " ".join([f"BASE={session.ecr.host}", *(f"{k}={v}" for k, v in build_args.items())])
    return session.run(app, source, pipeline, inputs={"build_args": args}, override=daemon_variables, busybox=busybox)


@pytest.fixture(scope="module")
def daemons(session: BuildSession) -> Iterator[dict[str, WarmDaemon]]:
    started: dict[str, WarmDaemon] = {}
    try:
        for app in APPS:
            started[app] = WarmDaemon(session, f"acme-{app}").start()
        yield started
    finally:
        for daemon in started.values():
            daemon.stop()


def test_a_project_builds_on_its_warm_daemon_and_its_cache_mount_persists(
    session: BuildSession, daemons: dict[str, WarmDaemon], tmp_path_factory: pytest.TempPathFactory
) -> None:
    own = daemons["cache-mount"].variables()
    # On the rootless image's own tools (BusyBox applets): timeout, base64 -d and grep -E as the job has them.
    first = build(session, "cache-mount", own, Pipeline(sha="1" * 40, job_id=11), tmp_path_factory, busybox=True, MARK="first-build")
    assert first.returncode == 0, first.output[-3000:]
    assert "on the project's warm daemon tcp://localhost:" in first.output and "WARNING" not in first.output
    assert "cache after: first-build" in first.output
    second = build(session, "cache-mount", own, Pipeline(sha="2" * 40, job_id=12), tmp_path_factory, MARK="second-build")
    assert second.returncode == 0, second.output[-3000:]
    assert "cache before: first-build" in second.output  # the mount outlived the job: the daemon is warm
    assert session.ecr is not None and "2" * 40 in session.ecr.tags(session.repository("cache-mount"))


def test_another_projects_daemon_refuses_the_certificate_and_shares_no_cache_mount(
    session: BuildSession, daemons: dict[str, WarmDaemon], tmp_path_factory: pytest.TempPathFactory
) -> None:
    # cache-mount's job, its own certificate, pointed at go-service's daemon: refused in the TLS handshake.
    wrong = {**daemons["cache-mount"].variables(), "BUILDKIT_HOST": daemons["go-service"].variables()["BUILDKIT_HOST"]}
    result = build(session, "cache-mount", wrong, Pipeline(sha="3" * 40, job_id=13), tmp_path_factory, MARK="wrong-daemon")
    assert result.returncode == 0, result.output[-3000:]
    assert "WARNING: the project's warm BuildKit daemon is unusable: it refused this project's client certificate" in result.output
    assert "cache before: empty" in result.output  # built by a daemon of the job's own: nothing warm, nothing shared
    # go-service's daemon (with its own certificate, so it accepts the job), the same cache id: it never held
    # what cache-mount's daemon keeps in that mount.
    other = build(
        session, "cache-mount", daemons["go-service"].variables(), Pipeline(sha="4" * 40, job_id=14), tmp_path_factory, MARK="probe"
    )
    assert other.returncode == 0, other.output[-3000:]
    assert "on the project's warm daemon" in other.output and "cache before: empty" in other.output, other.output[-3000:]


def test_a_daemon_restarted_with_empty_state_builds_warm_from_the_registry_cache(
    session: BuildSession, daemons: dict[str, WarmDaemon], tmp_path_factory: pytest.TempPathFactory
) -> None:
    daemon = daemons["go-service"]
    pipeline = Pipeline(sha="5" * 40, job_id=15)
    first = build(session, "go-service", daemon.variables(), pipeline, tmp_path_factory)
    assert first.returncode == 0, first.output[-3000:]
    daemon.wipe()
    daemon.start()
    again = build(session, "go-service", daemon.variables(), Pipeline(sha="5" * 40, ref_slug="other", job_id=16), tmp_path_factory)
    assert again.returncode == 0, again.output[-3000:]
    assert "on the project's warm daemon" in again.output
    compiled = {title: state for title, state in steps(again).items() if "go build" in title}
    assert compiled and all(is_cache_hit(title, state) for title, state in compiled.items()), again.output[-3000:]


def test_a_daemon_that_is_down_falls_back_and_still_pushes(
    session: BuildSession, daemons: dict[str, WarmDaemon], tmp_path_factory: pytest.TempPathFactory
) -> None:
    daemon = daemons["cache-mount"]
    daemon.stop()
    try:
        result = build(session, "cache-mount", daemon.variables(), Pipeline(sha="6" * 40, job_id=17), tmp_path_factory, MARK="down")
        assert result.returncode == 0, result.output[-3000:]
        assert "WARNING: the project's warm BuildKit daemon is unusable: it does not answer at tcp://localhost:" in result.output
        assert session.ecr is not None and "6" * 40 in session.ecr.tags(session.repository("cache-mount"))
    finally:
        daemon.start()


def test_garbage_collection_keeps_the_state_under_the_configured_size(
    session: BuildSession, tmp_path_factory: pytest.TempPathFactory
) -> None:
    limit = 150 * 10**6  # bytes; the flag counts MB of 10^6
    warm = WarmBuilderConfig(storage="1Gi", gc_max_used_space="150M")
    daemon = WarmDaemon(session, "acme-gc", warm=warm).start()
    try:
        for n in range(3):
            # A changed tree each time: the compile step runs, so the Go toolchain's layers are pulled in.
            pipeline = Pipeline(sha=str(7 + n) * 40, ref_slug=f"gc-{n}", job_id=20 + n)
            result = build(session, "go-service", daemon.variables(), pipeline, tmp_path_factory, changes=10 + n)
            assert result.returncode == 0, result.output[-3000:]
        deadline = time.monotonic() + 60
        used = daemon.used_bytes()
        while used > limit and time.monotonic() < deadline:
            time.sleep(2)
            used = daemon.used_bytes()
        assert used <= limit, f"state {used} bytes above the configured {limit}"
    finally:
        daemon.stop()
    # The control: the same kind of build on a daemon whose limit is far away keeps far more than that limit,
    # so the collector above did the work (about 386 MB of the Go toolchain's layers and the build's).
    control = WarmDaemon(session, "acme-gc-control", warm=WarmBuilderConfig(storage="100Gi")).start()
    try:
        pipeline = Pipeline(sha="a" * 40, ref_slug="gc-control", job_id=30)
        result = build(session, "go-service", control.variables(), pipeline, tmp_path_factory, changes=20)
        assert result.returncode == 0, result.output[-3000:]
        assert control.used_bytes() > 2 * limit
    finally:
        control.stop()


def test_an_expired_client_certificate_is_refused_with_what_to_do(
    session: BuildSession, daemons: dict[str, WarmDaemon], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Signed by the project's own CA but past its end: the daemon refuses it; the job names `pulumi up`."""
    daemon = daemons["go-service"]
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=40)
    props = {"project": daemon.project_key, "serverNames": ["localhost"], "validityDays": 30, "renewBeforeDays": 7}
    expired = issue(props, ca=(daemon.certs["caPem"], daemon.certs["caKeyPem"]), now=past)
    result = build(session, "go-service", daemon.variables(expired), Pipeline(sha="e" * 40, job_id=31), tmp_path_factory)
    assert result.returncode == 0, result.output[-3000:]
    assert "WARNING: the project's warm BuildKit daemon is unusable:" in result.output
    warning = next(line for line in result.output.splitlines() if "warm BuildKit daemon is unusable" in line)
    assert "its client certificate (BUILDKIT_TLS_CERT_B64) has expired or cannot be read: run 'pulumi up'" in warning, warning
