"""One measured process: evaluate the stack program under mocks (or only the baseline floor) and
print a JSON line with wall time, peak RSS, resource count and dependency depth."""

from __future__ import annotations

import argparse
import json
import sys
import time

STARTED = time.perf_counter()

from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fleet_config(stack: str, apps: int) -> dict:
    from verify.harness import load_stack_file

    config = load_stack_file(stack)
    # one project per application: the widest stack (an identity, a cache and variables each)
    config["registry"] = {
        **config["registry"],
        "applications": [{"name": f"app-{i:04d}", "projectPath": f"acme/app-{i:04d}"} for i in range(apps)],
    }
    credentials = config.get("credentials", {})
    if credentials.get("mode") == "oidc":
        # every OIDC subject must name a configured project: one protected ref per fleet project
        ref = credentials["oidcSubjects"][0]["ref"]
        config["credentials"] = {
            **credentials,
            "oidcSubjects": [{"projectPath": f"acme/app-{i:04d}", "ref": ref} for i in range(apps)],
        }
    return config


def dependency_depth(registrations: list) -> int:
    """Longest chain of custom resources that must be created one after another.

    A dependency on a component means a dependency on every custom resource under it (as the engine
    waits for a component's children); providers count as resources the engine must create first.
    """
    by_urn = {r.urn: r for r in registrations}
    children: dict[str, list[str]] = {}
    for r in registrations:
        children.setdefault(r.parent, []).append(r.urn)

    def customs_under(urn: str) -> list[str]:
        found, stack = [], [urn]
        while stack:
            current = stack.pop()
            reg = by_urn.get(current)
            if reg is not None and reg.custom:
                found.append(current)
            stack.extend(children.get(current, []))
        return found

    edges: dict[str, set[str]] = {}
    for r in registrations:
        if not r.custom:
            continue
        deps: set[str] = set()
        for dep in r.dependencies:
            deps.update(customs_under(dep))
        provider = r.provider.rsplit("::", 1)[0] if r.provider else ""
        if provider in by_urn:
            deps.add(provider)
        deps.discard(r.urn)
        edges[r.urn] = deps
    memo: dict[str, int] = {}

    def depth(urn: str) -> int:
        if urn not in memo:
            memo[urn] = 1 + max((depth(d) for d in edges.get(urn, ()) if d in edges), default=0)
        return memo[urn]

    return max((depth(u) for u in edges), default=0)


def baseline() -> dict:
    """Imports, every resource class the stack uses touched (the SDKs load modules lazily), mocks, no resources."""
    import pulumi
    import pulumi_aws as aws
    import pulumi_gitlab as gitlab
    import pulumi_kubernetes as k8s
    import pydantic  # noqa: F401

    from verify.harness import PROJECT, RecordingMonitor, StackMocks

    touched = [
        k8s.Provider,
        k8s.core.v1.Namespace,
        k8s.core.v1.LimitRange,
        k8s.core.v1.ResourceQuota,
        k8s.core.v1.ServiceAccount,
        k8s.core.v1.Secret,
        k8s.rbac.v1.Role,
        k8s.rbac.v1.RoleBinding,
        k8s.networking.v1.NetworkPolicy,
        k8s.helm.v3.Release,
        aws.Provider,
        aws.ecr.Repository,
        aws.ecr.LifecyclePolicy,
        aws.ecr.RepositoryPolicy,
        aws.iam.Policy,
        aws.iam.User,
        aws.iam.UserPolicyAttachment,
        aws.iam.AccessKey,
        aws.iam.Role,
        aws.iam.RolePolicyAttachment,
        aws.iam.OpenIdConnectProvider,
        gitlab.Provider,
        gitlab.UserRunner,
        gitlab.ProjectVariable,
        gitlab.GroupVariable,
    ]
    mocks = StackMocks("eu-west-1")
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack="dev", preview=False, monitor=RecordingMonitor(mocks))

    @pulumi.runtime.test
    def empty() -> None:
        return None

    empty()
    return {"resources": 0, "depth": 0, "classes": len(touched)}


def sdk_floor(count: int) -> dict:
    """The Pulumi SDK's own cost per registered resource under mocks: `count` trivial LifecyclePolicies."""
    import pulumi
    import pulumi_aws as aws
    from pulumi.runtime.mocks import MockResourceArgs, Mocks

    class Echo(Mocks):
        def new_resource(self, args: MockResourceArgs) -> tuple[str, dict]:
            return f"{args.name}-id", dict(args.inputs)

        def call(self, args: object) -> dict:  # type: ignore[override]
            return {}

    pulumi.runtime.set_mocks(Echo(), project="floor", stack="floor", preview=False)
    started = time.perf_counter()

    @pulumi.runtime.test
    def many() -> None:
        for i in range(count):
            aws.ecr.LifecyclePolicy(f"lp{i}", repository=f"r{i}", policy="{}")

    many()
    return {"resources": count, "depth": 1, "register_s": time.perf_counter() - started}


def program(stacks: list[str], apps: int) -> dict:
    from verify.harness import run_program

    resources = depth = 0
    for stack in stacks:
        run = run_program(fleet_config(stack, apps), stack=stack)
        resources += len(run.resources)
        depth = max(depth, dependency_depth(run.resources))
    return {"resources": resources, "depth": depth}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=["baseline", "program", "sdk-floor"], required=True)
    parser.add_argument("--apps", type=int, default=10)
    parser.add_argument("--stacks", default="dev")
    args = parser.parse_args()
    if args.mode == "baseline":
        result = baseline()
    elif args.mode == "sdk-floor":
        result = sdk_floor(args.apps)
    else:
        result = program(args.stacks.split(","), args.apps)
    result.update(wall_s=time.perf_counter() - STARTED, peak_rss_mib=peak_rss_mib())
    print(json.dumps(result))


if __name__ == "__main__":
    main()
