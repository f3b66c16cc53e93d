"""`make demo`: the stack's main job on this machine, under the real Pulumi engine.

    python -m e2e.demo up     # build what is missing, start the local platform, `pulumi up` stack `local`
    python -m e2e.demo down   # `make demo-down`: stop every process the demo started, remove its files

The platform (`e2e/platform.py`) keeps running after `up`, so the result can be looked at with
kubectl and pulumi; `build/demo/env.sh` sets what those commands need.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

from .platform import PROJECT, LocalPlatform, PlatformError, stack_file_config, stop_from_pidfile
from .tools import ROOT, ToolError

WORKDIR = ROOT / "build" / "demo"
STACK = "local"


def _env_script(platform: LocalPlatform, project: Path) -> Path:
    keep = ("PATH", "PULUMI_HOME", "PULUMI_BACKEND_URL", "PULUMI_CONFIG_PASSPHRASE", "KUBECONFIG", "GBR_AWS_ENDPOINT", "GBR_GITLAB_API",
            "GBR_STANDIN_LOG", "GITLAB_TOKEN", "SSL_CERT_FILE", "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION", "PULUMI_SKIP_UPDATE_CHECK")  # fmt: skip
    lines = [f"export {k}={shlex.quote(platform.env[k])}" for k in keep]
    lines.append(f"cd {shlex.quote(str(project))}")
    path = WORKDIR / "env.sh"
    header = (
        "# source me: the demo's pulumi and kubectl, its kubeconfig and the stand-ins' endpoints (make demo).\n"
        "# GITLAB_TOKEN is the local GitLab API stand-in's own random token, not a GitLab credential.\n"
    )
    path.write_text(header + "\n".join(lines) + "\n")
    return path


def up() -> int:
    if (WORKDIR / "pids.json").exists():
        print(f"A demo is already running (see {WORKDIR}/env.sh); `make demo-down` removes it first.", file=sys.stderr)
        return 1
    started = time.monotonic()
    print(">> tools: the Pulumi CLI, its Python language host, the Kubernetes provider, kube-apiserver, etcd, kwok")
    print("   (built from source into the tool cache on first use: about 30 minutes cold on 2 cores, seconds after)", flush=True)
    platform = LocalPlatform(WORKDIR)
    try:
        platform.start()
    except (ToolError, PlatformError) as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    print(
        f">> local platform up: kube-apiserver {platform.cluster.url if platform.cluster else '?'}, chart repository {platform.chart_repository},"
    )
    print(f"   AWS stand-in (moto) {platform.aws_endpoint}, GitLab API stand-in {platform.gitlab_api}", flush=True)
    try:
        project = platform.project()
        platform.new_stack(STACK, stack_file_config(STACK), project)
        print(f">> pulumi up --stack {STACK} --policy-pack policies (real engine; about 2 minutes)", flush=True)
        result = platform.pulumi(*platform.up_args(project), project=project, stack=STACK, timeout=1800)
        print("\n".join(line for line in result.stdout.splitlines() if line.strip())[-2500:])
        outputs = json.loads(platform.pulumi("stack", "output", "--json", project=project, stack=STACK).stdout)
    except PlatformError as exc:
        print(f"ERROR: {exc}\nThe platform is still running for a look (logs in {WORKDIR}); `make demo-down` removes it.", file=sys.stderr)
        _env_script(platform, project)
        return 1
    env = _env_script(platform, project)
    print(f"\n>> done in {time.monotonic() - started:.0f}s: stack {PROJECT}/{STACK} is up.")
    print(
        f"   runner release {outputs.get('releaseName')} ({outputs.get('releaseStatus')}), job security mode {outputs.get('jobSecurityMode')},"
    )
    print(f"   repositories: {', '.join(sorted(outputs.get('repositories', {}).values()))}")
    print("\nLook at it:")
    print(f"   source {env}")
    print(f"   kubectl -n {outputs.get('managerNamespace')} get deploy,pods,secrets   # kwok nodes: pods Ready, no containers run")
    print(f"   kubectl get ns {outputs.get('jobNamespace')} --show-labels")
    print(f"   pulumi stack output --stack {STACK}      pulumi stack --stack {STACK}      pulumi preview --stack {STACK} --diff")
    print("Remove it: make demo-down")
    return 0


def down() -> int:
    stopped = stop_from_pidfile(WORKDIR)
    print(f">> demo removed ({stopped} process groups stopped, {WORKDIR} deleted)" if stopped else ">> no demo running")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["up", "down"])
    args = parser.parse_args(argv)
    return up() if args.action == "up" else down()


if __name__ == "__main__":
    sys.exit(main())
