"""Benchmark: what the stack program costs as fleets and environments grow.

    make bench                      # or: python -m bench.run [--repeat 5] [--quick]

Every measurement runs in a fresh process and is repeated; the table shows the median and the
spread (min-max). Results go to build/bench/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "build" / "bench"
APP_COUNTS = (1, 10, 100, 500)
ALL_STACKS = "dev,staging,prod"
TARGETS = {"ratio_at_10": 1.5, "ms_per_app": 5.0, "mib_per_app": 0.5, "synth_all_s": 30.0}


def worker(*args: str) -> dict[str, Any]:
    result = subprocess.run([sys.executable, "-m", "bench.worker", *args], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def stats(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def measure(label: str, repeat: int, *args: str) -> dict[str, Any]:
    print(f"  {label} x{repeat} ...", end="", flush=True)
    runs = [worker(*args) for _ in range(repeat)]
    summary = {
        "wall_s": stats([r["wall_s"] for r in runs]),
        "peak_rss_mib": stats([r["peak_rss_mib"] for r in runs]),
        "resources": runs[0]["resources"],
        "depth": runs[0]["depth"],
    }
    if "register_s" in runs[0]:
        summary["register_s"] = stats([r["register_s"] for r in runs])
    print(f" {summary['wall_s']['median']:.2f}s", flush=True)
    return summary


def row(name: str, m: dict[str, Any], floor: dict[str, Any]) -> str:
    wall, rss = m["wall_s"], m["peak_rss_mib"]
    ratio = wall["median"] / floor["wall_s"]["median"]
    return (
        f"| {name} | {m['resources']} | {m['depth']} | {wall['median']:.2f} ({wall['min']:.2f}-{wall['max']:.2f}) | "
        f"{ratio:.2f}x | {rss['median']:.0f} ({rss['min']:.0f}-{rss['max']:.0f}) |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="3 repeats, no test-suite timing")
    args = parser.parse_args(argv)
    repeat = 3 if args.quick else args.repeat
    started = time.perf_counter()
    print("== baseline (imports, every resource class touched, mocks, no resources)")
    floor = measure("baseline", repeat, "--mode", "baseline")
    print("== Pulumi SDK cost per resource under mocks (1500 trivial resources)")
    sdk = measure("sdk-floor", repeat, "--mode", "sdk-floor", "--apps", "1500")
    programs: dict[str, dict[str, Any]] = {}
    for stacks, label in (("dev", "one environment"), (ALL_STACKS, "all environments")):
        print(f"== program, {label}")
        for apps in APP_COUNTS:
            programs[f"{label}:{apps}"] = measure(f"{apps} apps", repeat, "--mode", "program", "--apps", str(apps), "--stacks", stacks)

    print("== make synth STACK=all")
    synth = stats(
        [timed([sys.executable, "-m", "verify.synth", "--stack", "all", "--build-dir", str(OUT / "synth")]) for _ in range(min(repeat, 3))]
    )
    suite = None
    if not args.quick:
        print("== the whole test suite (make test)")
        suite = stats([timed(["make", "test"]) for _ in range(min(repeat, 3))])

    one10, one500 = programs["one environment:10"], programs["one environment:500"]
    ms_per_app = (one500["wall_s"]["median"] - one10["wall_s"]["median"]) / 490 * 1000
    mib_per_app = (one500["peak_rss_mib"]["median"] - one10["peak_rss_mib"]["median"]) / 490
    sdk_ms_per_resource = sdk["register_s"]["median"] / 1500 * 1000
    resources_per_app = (one500["resources"] - one10["resources"]) / 490
    derived = {
        "ratio_at_10": one10["wall_s"]["median"] / floor["wall_s"]["median"],
        "ms_per_app": ms_per_app,
        "mib_per_app": mib_per_app,
        "resources_per_app": resources_per_app,
        "sdk_ms_per_resource": sdk_ms_per_resource,
        "sdk_floor_ms_per_app": resources_per_app * sdk_ms_per_resource,
        "depths": sorted({m["depth"] for m in programs.values()}),
        "synth_all_s": synth["median"],
    }
    machine = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "system": platform.platform(),
    }
    results = {
        "machine": machine,
        "baseline": floor,
        "sdk_floor": sdk,
        "programs": programs,
        "synth_all": synth,
        "test_suite": suite,
        "derived": derived,
        "targets": TARGETS,
        "total_s": time.perf_counter() - started,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "results.json").write_text(json.dumps(results, indent=2))

    print("\n| run | resources | depth | wall s median (min-max) | x floor | peak RSS MiB median (min-max) |")
    print("|---|---|---|---|---|---|")
    print(row("baseline floor", floor, floor))
    for name, m in programs.items():
        print(row(name, m, floor))
    print(f"\nsynth, all stacks: {synth['median']:.2f}s ({synth['min']:.2f}-{synth['max']:.2f})")
    if suite:
        print(f"test suite (make test): {suite['median']:.1f}s ({suite['min']:.1f}-{suite['max']:.1f})")
    print(f"program/floor at 10 apps: {derived['ratio_at_10']:.2f}x (target <= {TARGETS['ratio_at_10']}x)")
    print(
        f"per extra application: {ms_per_app:.2f} ms (target <= {TARGETS['ms_per_app']}), {mib_per_app:.3f} MiB (target <= {TARGETS['mib_per_app']})"
    )
    print(
        f"  = {resources_per_app:.0f} resources x SDK floor {sdk_ms_per_resource:.2f} ms = {derived['sdk_floor_ms_per_app']:.2f} ms of Pulumi SDK work per app"
    )
    print(f"dependency depth over all runs: {derived['depths']} (must not grow with applications)")
    print(f"results: {OUT / 'results.json'}  (total {results['total_s']:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
