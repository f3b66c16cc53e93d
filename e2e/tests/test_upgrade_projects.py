"""Upgrade of a prod stack into one component per application project (2.0.0), under the real engine.

The prod stack of the last commit before ApplicationProject is deployed on the local platform; HEAD's
program then previews and applies it. The engine must find every repository, identity and variable by
the aliases the components carry (children by their parents' aliases), show only the three new
components, replace nothing, keep every cloud object's id and protection, and end with no changes.
(A module of its own: the platform, and with it the AWS stand-in's account, is per module, and this
stack would collide with test_upgrade's prod stack on IAM names and the account's OIDC provider.)
"""

from __future__ import annotations

import json
import subprocess

import yaml

from e2e.platform import LocalPlatform, namespaced
from e2e.tools import ROOT

# The last commit before one component per application project (2.0.0): its prod stack, upgraded by
# HEAD's program, moves every repository, identity and variable by alias and replaces nothing.
BEFORE_PROJECTS = "8ef6a8d1f19a2f03c42bb765ae672966f1cb7e47"


def test_prod_moves_into_application_projects_without_replacing_anything(platform: LocalPlatform) -> None:
    ref = subprocess.run(
        ["git", "rev-parse", "--verify", f"{BEFORE_PROJECTS}^{{commit}}"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    old = platform.project("before-projects", ref=ref.stdout.strip())
    text = subprocess.run(
        ["git", "show", f"{BEFORE_PROJECTS}:Pulumi.prod.yaml"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    config = namespaced(dict(yaml.safe_load(text)["config"]), "prodmove")
    config["gitlab-buildkit-runner:credentials"].pop("oidcProvider")  # an account of its own (Pulumi.prod.yaml says so)
    platform.new_stack("prodmove", config, old)
    platform.pulumi("up", "--yes", "--skip-preview", project=old, stack="prodmove", timeout=1800)
    before = {r["urn"]: r for r in platform.export(old, "prodmove")["deployment"]["resources"]}

    head = platform.project()
    stack_file = yaml.safe_load((old / "Pulumi.prodmove.yaml").read_text())
    (head / "Pulumi.prodmove.yaml").write_text(yaml.safe_dump(stack_file, sort_keys=False))
    preview = platform.pulumi("preview", "--json", project=head, stack="prodmove", timeout=1800)
    steps = json.loads(preview.stdout)["steps"]
    changed = sorted((s["op"], s["urn"].rsplit("::", 1)[-1]) for s in steps if s["op"] not in ("same",))
    # Only the new components appear (a component has no cloud object); nothing is replaced or deleted.
    assert changed == [("create", "project-acme-api"), ("create", "project-acme-web"), ("create", "project-acme-worker")], changed
    platform.pulumi(*platform.up_args(head), project=head, stack="prodmove", timeout=1800)
    platform.pulumi("preview", "--expect-no-changes", project=head, stack="prodmove")
    after = {r["urn"]: r for r in platform.export(head, "prodmove")["deployment"]["resources"]}
    by_name = {u.rsplit("::", 1)[-1] + "|" + r["type"]: r for u, r in after.items()}
    for urn, resource in before.items():
        if not resource.get("custom") or resource["type"].startswith("pulumi:providers:"):
            continue
        moved = by_name[urn.rsplit("::", 1)[-1] + "|" + resource["type"]]
        assert moved["id"] == resource["id"], urn  # the same cloud object, now under its project
        assert moved.get("protect", False) == resource.get("protect", False), urn
