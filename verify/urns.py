"""The URN pin of every shipped stack: renames go through aliases, never through replacement.

    python -m verify.urns            # check every Pulumi.<stack>.yaml against tests/fixtures/urns.json
    python -m verify.urns --write    # pin resources that are new; never unpins one

A URN is a resource's identity in state. Changing a type token, a resource name or a parent makes the
engine delete the old resource and create a new one (for an ECR repository: with its images). So a
pinned URN may only disappear when some resource now carries it as an alias (the `moved {}` discipline
of terraform-aws-eks). Removing a resource on purpose means editing the pin file by hand, with an
UPGRADE.md section that says so.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from .harness import ROOT, engine_urn, run_stack

PIN_FILE = ROOT / "tests" / "fixtures" / "urns.json"


@dataclass(frozen=True)
class UrnCheck:
    stack: str
    missing: list[str]  # pinned, gone, and no resource has it as an alias
    added: list[str]  # present, not pinned yet
    aliased: dict[str, str]  # pinned URN -> the resource that now carries it as an alias


def shipped_stacks() -> list[str]:
    return sorted(p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in ROOT.glob("Pulumi.*.yaml"))


def load_pins(path: Path = PIN_FILE) -> dict[str, list[str]]:
    return json.loads(path.read_text()) if path.exists() else {}


def check_stack(stack: str, pinned: list[str]) -> UrnCheck:
    run = run_stack(stack)
    current = {engine_urn(r.urn) for r in run.resources}
    carriers = {alias: engine_urn(r.urn) for r in run.resources for alias in r.aliases}
    gone = [u for u in pinned if u not in current]
    return UrnCheck(
        stack=stack,
        missing=sorted(u for u in gone if u not in carriers),
        added=sorted(current - set(pinned)),
        aliased={u: carriers[u] for u in gone if u in carriers},
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help="pin new resources (and moves covered by an alias)")
    args = parser.parse_args(argv)
    pins = load_pins()
    failed = False
    for stack in shipped_stacks():
        result = check_stack(stack, pins.get(stack, []))
        for urn in result.missing:
            failed = True
            print(
                f"{stack}: MISSING {urn}\n    add `aliases=[...]` to the resource that replaces it, or remove it from {PIN_FILE.name} by hand"
            )
        for old, new in result.aliased.items():
            print(f"{stack}: moved {old}\n      -> {new} (alias)")
        for urn in result.added:
            print(f"{stack}: new {urn}")
        if args.write:
            kept = [u for u in pins.get(stack, []) if u not in result.aliased]
            pins[stack] = sorted({*kept, *result.added, *result.aliased.values()})
        elif result.added or result.aliased:
            failed = True
    if args.write:
        PIN_FILE.write_text(json.dumps(pins, indent=1, sort_keys=True) + "\n")
        print(f"wrote {PIN_FILE.relative_to(ROOT)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
