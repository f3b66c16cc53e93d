"""Benchmark: a real `pulumi preview` of fleets of 3, 10 and 30 applications under the real engine.

    python -m bench.engine [--repeat 3]      # part of `make bench`; needs the e2e tools (built on first use)

What users feel per application: the CLI, the Python language host, the program, the Kubernetes
provider and the stand-in aws/gitlab plugins, against the local control plane of `e2e/platform.py`
(a first preview: nothing exists yet, every resource is a create). Wall time is the CLI's; peak
memory is the largest sum of the resident sets of the CLI and every process it started (language
host, program, plugins), sampled from /proc every 50 ms. Results: build/bench/engine.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.run import worker
from bench.worker import fleet_config
from e2e.platform import PROJECT, LocalPlatform

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "build" / "bench"
FLEETS = (3, 10, 30)


def _children(pid: int) -> list[int]:
    try:
        tasks = Path(f"/proc/{pid}/task").iterdir()
        found = []
        for task in tasks:
            found += [int(c) for c in (task / "children").read_text().split()]
        return found
    except OSError:
        return []


def tree_rss_mib(root: int) -> float:
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
        stack += _children(pid)
    return total / 1024


def timed_preview(platform: LocalPlatform, project: Path, stack: str) -> tuple[float, float]:
    command = [str(platform.engine.pulumi), "preview", "--non-interactive", "--stack", stack]
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=project, env=platform.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0.0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss_mib(process.pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, stderr = process.communicate(timeout=1800)
    wall = time.perf_counter() - started
    done.set()
    sampler.join()
    if process.returncode != 0:
        raise RuntimeError(f"pulumi preview of {stack} failed:\n{stderr.decode()[-3000:]}")
    return wall, peak


def stats(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def run(repeat: int) -> dict[str, Any]:
    platform = LocalPlatform(OUT / f"engine-{int(time.time())}")
    results: dict[str, Any] = {}
    try:
        platform.start()
        project = platform.project()
        for apps in FLEETS:
            stack = f"fleet-{apps}"
            config = {f"{PROJECT}:{key}": value for key, value in fleet_config("dev", apps).items()}
            platform.new_stack(stack, config, project)
            platform.pulumi("preview", project=project, stack=stack, timeout=1800)  # warm: plugins loaded once, bytecode compiled
            runs = [timed_preview(platform, project, stack) for _ in range(repeat)]
            # The same fleet under the mock harness (bench.worker, as `make bench` runs it), in this run.
            mocked = [worker("--mode", "program", "--apps", str(apps), "--stacks", "dev") for _ in range(repeat)]
            results[str(apps)] = {
                "wall_s": stats([w for w, _ in runs]),
                "peak_rss_mib": stats([m for _, m in runs]),
                "mock_wall_s": stats([m["wall_s"] for m in mocked]),
                "mock_peak_rss_mib": stats([m["peak_rss_mib"] for m in mocked]),
                "resources": mocked[0]["resources"],
            }
            print(
                f"  {apps} apps: {results[str(apps)]['wall_s']['median']:.1f}s, {results[str(apps)]['peak_rss_mib']['median']:.0f} MiB",
                flush=True,
            )
    finally:
        platform.stop()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    print("== real engine: `pulumi preview` of a first deployment (local control plane, stand-ins for AWS and GitLab)")
    results = run(args.repeat)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "engine.json").write_text(json.dumps(results, indent=2))
    print(
        "\n| applications | resources | real `pulumi preview` s | peak RSS, CLI + plugins + program MiB | mock harness s | mock peak RSS MiB | real / mock |"
    )
    print("|---|---|---|---|---|---|---|")
    for apps, m in results.items():
        w, r, mw, mr = m["wall_s"], m["peak_rss_mib"], m["mock_wall_s"], m["mock_peak_rss_mib"]
        print(
            f"| {apps} | {m['resources']} | {w['median']:.1f} ({w['min']:.1f}-{w['max']:.1f}) | {r['median']:.0f} ({r['min']:.0f}-{r['max']:.0f}) "
            f"| {mw['median']:.2f} ({mw['min']:.2f}-{mw['max']:.2f}) | {mr['median']:.0f} | {w['median'] / mw['median']:.1f}x |"
        )
    first, last = results[str(FLEETS[0])], results[str(FLEETS[-1])]
    span = FLEETS[-1] - FLEETS[0]
    print(
        f"per extra application: real {(last['wall_s']['median'] - first['wall_s']['median']) / span * 1000:.0f} ms and "
        f"{(last['peak_rss_mib']['median'] - first['peak_rss_mib']['median']) / span:.2f} MiB; mock "
        f"{(last['mock_wall_s']['median'] - first['mock_wall_s']['median']) / span * 1000:.0f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
