"""The desired-state diff of a merge request, with no credentials at all.

Merge-request pipelines from any branch get no protected variables, and must not: the stack's
credentials would be in reach of whoever pushed the branch. So they do not run `pulumi preview`.
Instead the verify stage synthesises every stack offline (`make synth`: the real program under mocks,
no cloud access, secrets as [secret]) for the merge-request head and for its target branch, and this
module compares the two: which resources the change adds, removes or changes, and which inputs.

    python -m cicd.desired_state_diff --base build/base --head build/head --stack prod \
        [--output diff.md] [--terraform-report tf.json]

What it cannot show: drift between state and the cloud, provider-side replacements, computed values.
The trusted `pulumi preview` (protected branches, read-only identity) shows those.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cicd.preview_note import code, text


def load(build: Path, stack: str) -> dict[str, dict[str, Any]]:
    """URN -> {type, inputs} of a synth run (build/<stack>/resources.json)."""
    path = build / stack / "resources.json"
    return {r["urn"]: {"type": r["type"], "inputs": r.get("inputs") or {}} for r in json.loads(path.read_text())}


def changed_paths(before: Any, after: Any, path: str = "") -> list[str]:
    if isinstance(before, dict) and isinstance(after, dict):
        paths: list[str] = []
        for key in sorted(set(before) | set(after)):
            paths += changed_paths(before.get(key), after.get(key), f"{path}.{key}" if path else str(key))
        return paths
    return [] if before == after else [path or "(value)"]


def diff(base: dict[str, dict[str, Any]], head: dict[str, dict[str, Any]]) -> dict[str, list[tuple[str, list[str]]]]:
    created = [(urn, []) for urn in sorted(set(head) - set(base))]
    deleted = [(urn, []) for urn in sorted(set(base) - set(head))]
    updated = []
    for urn in sorted(set(base) & set(head)):
        paths = changed_paths(base[urn]["inputs"], head[urn]["inputs"])
        if paths:
            updated.append((urn, paths))
    return {"create": created, "update": updated, "delete": deleted}


def render(stack: str, changes: dict[str, list[tuple[str, list[str]]]]) -> str:
    counts = ", ".join(f"{len(changes[op])} to {op}" for op in ("create", "update", "delete") if changes[op]) or "no changes"
    lines = [f"### Desired-state diff {code(stack)} (offline, no credentials): {counts}"]
    if changes["delete"]:
        lines.append(f"> **Attention:** {len(changes['delete'])} resource(s) leave the desired state (the engine would delete them).")
    for op in ("create", "update", "delete"):
        for urn, paths in changes[op]:
            name, typ = urn.rsplit("::", 1)[-1], urn.rsplit("::", 2)[-2].split("$")[-1]
            detail = (": " + ", ".join(code(p) for p in paths[:10]) + (" …" if len(paths) > 10 else "")) if paths else ""
            lines.append(f"- {text(op)} {code(name)} ({code(typ)}){detail}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, required=True, help="synth build folder of the target branch")
    parser.add_argument("--head", type=Path, required=True, help="synth build folder of the merge-request head")
    parser.add_argument("--stack", required=True)
    parser.add_argument("--output", type=Path)
    parser.add_argument("--terraform-report", type=Path, help="GitLab's terraform report JSON (MR widget counts)")
    args = parser.parse_args(argv)
    try:
        head = load(args.head, args.stack)
    except (OSError, ValueError, KeyError) as exc:
        print(f"cannot read the head synth of {args.stack}: {exc}", file=sys.stderr)
        return 2
    try:
        base = load(args.base, args.stack)
    except (OSError, ValueError, KeyError):
        print(f"no synth of the target branch for {args.stack} (new stack, or the target failed to synthesise): all resources are new")
        base = {}
    changes = diff(base, head)
    body = render(args.stack, changes)
    print(body)
    if args.output:
        args.output.write_text(body)
    if args.terraform_report:
        report = {"create": len(changes["create"]), "update": len(changes["update"]), "delete": len(changes["delete"])}
        args.terraform_report.write_text(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
