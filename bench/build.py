"""`make bench-build`: real rootless builds of the fixture apps, BuildKit (the template's own script)
with a daemon of the job's own (builder `buildkit`, builders.mode 'ephemeral') and on the project's warm
daemon (builder `warm`, builders.mode 'warm': e2e/warm_daemon.py, mTLS, the stack's flags), against
Buildah (rootless, `--layers` with a registry cache), on this machine. A benchmark, not a test.

Per app and repetition, each builder gets a fresh ECR stand-in (empty cache) and runs four jobs, each
from an empty HOME as a CI pod would:
  cold        default branch, first build (no registry cache)
  warm        default branch, a new commit with the same tree
  one-file    default branch, a commit that changes one source file (the app's change.txt)
  new-branch  a new branch's first build, one more file change on top (imports the default branch's cache)
Reported: wall time of each job, median (min-max) over repetitions; ratios to cold (the warm builder's
also to the ephemeral BuildKit cold build of the same repetition) and BuildKit/Buildah from the same run; the builder's peak RSS (buildkitd / buildah VmHWM); bytes pushed to the cache
repository; the peak disk use of the job folder (the builder's state, the checkout: what counts against the
build container's ephemeral storage). The warm builder starts each repetition with an empty daemon (its
"cold" is a first build on a new daemon); reported also: the daemon's memory after the scenarios, its
state's growth over 20 builds (one app, first repetition), and the job's own cost (no daemon in the job).
Results: build/bench-build.json.

    python -m bench.build [--reps 3] [--apps go-service,deps-install,many-layers,go-service-cache-mount] [--builders buildkit,warm,buildah]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.engine import tree_rss_mib  # noqa: E402
from components.config import project_key  # noqa: E402
from e2e.build_job import (  # noqa: E402
    BuildSession,
    HostError,
    JobResult,
    Pipeline,
    _disk_kib,
    check_host,
    checkout,
    fixture_config,
    run_buildah,
)
from e2e.warm_daemon import WarmDaemon  # noqa: E402

APPS = ["go-service", "deps-install", "many-layers", "go-service-cache-mount", "go-service-std-layer"]
DEFAULT_APPS = APPS[:4]
SCENARIOS = [  # name, ref slug, commit sha digit, changes to the tree
    ("cold", "main", "1", 0),
    ("warm", "main", "2", 0),
    ("one-file", "main", "3", 1),
    ("new-branch", "feature-x", "4", 2),
]
TARGETS = {"warm": 0.10, "one-file": 0.35, "new-branch": 0.35}
# The warm builder, as ratios to the ephemeral BuildKit cold build of the same repetition (one-file: the
# compiled app with a cache mount, go-service-cache-mount).
WARM_TARGETS = {"warm": 0.05, "one-file": 0.15, "new-branch": 0.15}
GROWTH_BUILDS = 20


def daemon_rss_mib(daemon: WarmDaemon) -> float:
    """Resident memory of the daemon's process tree (rootlesskit and buildkitd), now."""
    assert daemon.process is not None
    return tree_rss_mib(daemon.process.pid)


def one_repetition(
    app: str, builder: str, workdir: Path, *, reproducible: bool = True, growth: bool = False
) -> dict[str, dict[str, float]]:
    session = BuildSession(fixture_config([app])).start()
    measured: dict[str, dict[str, float]] = {}
    daemon: WarmDaemon | None = None
    try:
        assert session.ecr is not None
        if builder == "warm":
            daemon = WarmDaemon(session, project_key(session.project(app))).start()
        for name, ref, digit, changes in SCENARIOS:
            source = checkout(app, workdir / f"{app}-{builder}-{name}", changes=changes)
            session.ecr.ledger.reset()
            # Without CI_COMMIT_TIMESTAMP the template builds without SOURCE_DATE_EPOCH/rewrite-timestamp.
            pipeline = Pipeline(ref_slug=ref, sha=digit * 40) if reproducible else Pipeline(ref_slug=ref, sha=digit * 40, timestamp="")
            result: JobResult
            if builder == "buildkit":
                result = session.run(app, source, pipeline, inputs={"build_args": f"BASE={session.ecr.host}"})
            elif daemon is not None:
                result = session.run(app, source, pipeline, inputs={"build_args": f"BASE={session.ecr.host}"}, override=daemon.variables())
                if "on the project's warm daemon" not in result.output:
                    raise RuntimeError(f"warm {app} {name} did not build on the warm daemon:\n{result.output[-3000:]}")
            else:
                result = run_buildah(session, app, source, pipeline)
            if result.returncode != 0:
                raise RuntimeError(f"{builder} {app} {name} failed (exit {result.returncode}):\n{result.output[-3000:]}")
            measured[name] = {
                "seconds": result.seconds,
                "peak_mib": result.daemon_peak_kib / 1024,
                "disk_mib": result.disk_peak_kib / 1024,
                "cache_bytes": float(session.ecr.ledger.bytes_in.get(session.cache_repository(app), 0)),
                "image_bytes": float(session.ecr.ledger.bytes_in.get(session.repository(app), 0)),
            }
            if daemon is not None:
                measured[name]["daemon_rss_mib"] = daemon_rss_mib(daemon)
                measured[name]["state_mib"] = _disk_kib(daemon.state) / 1024
            print(
                f"   {builder:8} {app:12} {name:10} {result.seconds:6.1f}s  peak {result.daemon_peak_kib / 1024:6.0f} MiB"
                f"  disk {result.disk_peak_kib / 1024:6.0f} MiB",
                flush=True,
            )
        if daemon is not None and growth:
            # The state's growth over 20 builds of one-file changes on the default branch (the scenarios' 4 first).
            sizes = [measured[name]["state_mib"] for name, *_ in SCENARIOS]
            for n in range(len(SCENARIOS), GROWTH_BUILDS):
                source = checkout(app, workdir / f"{app}-warm-growth-{n}", changes=n)
                pipeline = Pipeline(ref_slug="main", sha=f"{n:040x}")
                result = session.run(app, source, pipeline, inputs={"build_args": f"BASE={session.ecr.host}"}, override=daemon.variables())
                if result.returncode != 0:
                    raise RuntimeError(f"warm {app} growth build {n} failed:\n{result.output[-3000:]}")
                sizes.append(_disk_kib(daemon.state) / 1024)
            measured["growth"] = {"state_mib": sizes[-1], "first_mib": sizes[0], "rss_mib": daemon_rss_mib(daemon)}
            print(f"   warm     {app:12} state over {GROWTH_BUILDS} builds: " + " ".join(f"{v:.0f}" for v in sizes) + " MiB", flush=True)
    finally:
        if daemon is not None:
            daemon.stop()
        session.stop()
    return measured


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3, help="repetitions per app and builder (default 3)")
    parser.add_argument("--apps", default=",".join(DEFAULT_APPS), help=f"comma-separated fixture apps, of {APPS}")
    parser.add_argument("--builders", default="buildkit,warm,buildah")
    parser.add_argument(
        "--no-reproducible",
        action="store_true",
        help="run the template without CI_COMMIT_TIMESTAMP (no rewrite-timestamp), to measure what reproducibility costs",
    )
    args = parser.parse_args(argv)
    apps = [a for a in args.apps.split(",") if a]
    unknown = sorted(set(apps) - set(APPS))
    if unknown or args.reps < 1:
        print(f"ERROR: --apps must name {APPS} (got {unknown}); --reps must be >= 1", file=sys.stderr)
        return 2
    builders = args.builders.split(",")
    try:
        check_host(buildah="buildah" in builders)
    except HostError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    workdir = ROOT / "build" / "bench-build"
    workdir.mkdir(parents=True, exist_ok=True)
    raw: dict[str, dict[str, list[dict[str, dict[str, float]]]]] = {}
    started = time.monotonic()
    for rep in range(args.reps):
        for app in apps:
            for builder in builders:  # interleaved, so drift on the machine hits both alike
                print(f">> repetition {rep + 1}/{args.reps}: {builder} {app}", flush=True)
                raw.setdefault(app, {}).setdefault(builder, []).append(
                    one_repetition(app, builder, workdir, reproducible=not args.no_reproducible, growth=rep == 0 and app == apps[-1])
                )
    lines = [
        f"{'app':12} {'builder':8} {'scenario':10} {'seconds median (min-max)':>26} {'/cold':>6} {'peak MiB':>9} {'cache MiB':>9} {'disk MiB':>9}"
    ]
    report: dict[str, object] = {"reps": args.reps, "reproducible": not args.no_reproducible, "apps": {}}
    for app, by_builder in raw.items():
        app_report: dict[str, object] = {}
        for builder, reps in by_builder.items():
            rows = {}
            cold = [r["cold"]["seconds"] for r in reps]
            for name, *_ in SCENARIOS:
                seconds = [r[name]["seconds"] for r in reps]
                ratios = [r[name]["seconds"] / r["cold"]["seconds"] for r in reps]
                peak = max(r[name]["peak_mib"] for r in reps)
                disk = max(r[name]["disk_mib"] for r in reps)
                cache = statistics.median(r[name]["cache_bytes"] for r in reps) / 2**20
                rows[name] = {"seconds": seconds, "ratio_to_cold": ratios, "peak_mib": peak, "cache_mib": cache, "disk_mib": disk}
                lines.append(
                    f"{app:12} {builder:8} {name:10} {summary(seconds):>26} {statistics.median(ratios):6.2f} {peak:9.0f} {cache:9.1f} {disk:9.0f}"
                )
            rows["cold_median"] = {"seconds": [statistics.median(cold)]}
            app_report[builder] = rows
        if {"buildkit", "warm"} <= set(by_builder):
            # The warm builder against the ephemeral BuildKit cold build of the same repetition.
            for name, *_ in SCENARIOS:
                ratios = [
                    w[name]["seconds"] / bk["cold"]["seconds"] for bk, w in zip(by_builder["buildkit"], by_builder["warm"], strict=True)
                ]
                app_report.setdefault("warm_to_ephemeral_cold", {})[name] = ratios  # type: ignore[union-attr]
                lines.append(
                    f"{app:12} warm {name:10} / ephemeral cold: {statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"
                )
            rss = [w["new-branch"]["daemon_rss_mib"] for w in by_builder["warm"]]
            state = [w["new-branch"]["state_mib"] for w in by_builder["warm"]]
            peak = [max(w[n]["peak_mib"] for n, *_ in SCENARIOS) for w in by_builder["warm"]]
            disk = [max(w[n]["disk_mib"] for n, *_ in SCENARIOS) for w in by_builder["warm"]]
            # The job starts no daemon: the sampled buildkitd peak is the warm daemon's; the job's own cost is its folder.
            lines.append(
                f"{app:12} warm daemon after the scenarios: RSS {summary(rss)} MiB (peak {summary(peak)}), state {summary(state)} MiB; "
                f"the job itself: no daemon, disk {summary(disk)} MiB"
            )
            growth = [w["growth"] for w in by_builder["warm"] if "growth" in w]
            if growth:
                lines.append(
                    f"{app:12} warm daemon over {GROWTH_BUILDS} builds: state {growth[0]['first_mib']:.0f} -> {growth[0]['state_mib']:.0f} MiB, RSS {growth[0]['rss_mib']:.0f} MiB"
                )
                app_report["warm_growth"] = growth[0]
        if {"warm", "buildah"} <= set(by_builder):
            speedups = [
                bah["warm"]["seconds"] / w["warm"]["seconds"] for w, bah in zip(by_builder["warm"], by_builder["buildah"], strict=True)
            ]
            app_report["warm_speedup_warm_daemon_over_buildah"] = speedups
            lines.append(
                f"{app:12} warm daemon is {statistics.median(speedups):.1f}x faster than Buildah warm ({min(speedups):.1f}-{max(speedups):.1f})"
            )
        if {"buildkit", "buildah"} <= set(by_builder):
            # Same repetition, same machine state: BuildKit warm over Buildah warm, per repetition.
            speedups = [
                bah["warm"]["seconds"] / bk["warm"]["seconds"]
                for bk, bah in zip(by_builder["buildkit"], by_builder["buildah"], strict=True)
            ]
            app_report["warm_speedup_buildkit_over_buildah"] = speedups
            lines.append(
                f"{app:12} BuildKit warm is {statistics.median(speedups):.1f}x faster than Buildah warm ({min(speedups):.1f}-{max(speedups):.1f})"
            )
        report["apps"][app] = app_report  # type: ignore[index]
    lines.append("")
    for app, by_builder in raw.items():
        for name, target in TARGETS.items():
            reps = by_builder.get("buildkit", [])
            if reps:
                ratio = statistics.median(r[name]["seconds"] / r["cold"]["seconds"] for r in reps)
                lines.append(
                    f"target {app:12} BuildKit {name:10} <= {target:.0%} of cold: {ratio:.0%} {'met' if ratio <= target else 'MISSED'}"
                )
    for app, by_builder in raw.items():
        if {"buildkit", "warm"} <= set(by_builder):
            for name, target in WARM_TARGETS.items():
                if name == "one-file" and app != "go-service-cache-mount":
                    continue  # the one-file target is the compiled app's with a cache mount
                ratio = statistics.median(
                    w[name]["seconds"] / bk["cold"]["seconds"] for bk, w in zip(by_builder["buildkit"], by_builder["warm"], strict=True)
                )
                lines.append(
                    f"target {app:12} warm {name:10} <= {target:.0%} of ephemeral cold: {ratio:.0%} {'met' if ratio <= target else 'MISSED'}"
                )
        if {"warm", "buildah"} <= set(by_builder):
            speedup = statistics.median(
                bah["warm"]["seconds"] / w["warm"]["seconds"] for w, bah in zip(by_builder["warm"], by_builder["buildah"], strict=True)
            )
            lines.append(
                f"target {app:12} warm daemon >= 5x faster than Buildah warm: {speedup:.1f}x {'met' if speedup >= 5 else 'MISSED'}"
            )
    lines.append(f"total {time.monotonic() - started:.0f}s")
    print("\n".join(lines))
    (ROOT / "build" / ("bench-build.json" if not args.no_reproducible else "bench-build-no-reproducible.json")).write_text(
        json.dumps({**report, "raw": raw}, indent=2)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
