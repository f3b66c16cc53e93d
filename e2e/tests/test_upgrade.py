"""Upgrade of a prod stack from 1.0.0 to this checkout by UPGRADE.md, under the real engine.

1.0.0 is the commit CHANGELOG calls so (tagged `v1.0.0`). Its program deploys a prod-like stack (its own
Pulumi.prod.yaml, pointed at the local platform); then UPGRADE.md is followed as written: every
`pulumi state unprotect` line it gives, HEAD's prod stack file as the "after" config (in an account of its
own, so the stack keeps creating its OIDC provider, as the stack file's comment says), one `pulumi up` with
HEAD's program. It must end with no error, without replacing an application repository, the runner
release, the runner or its token Secret, and with the state HEAD expects (the pinned URNs).
"""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

import yaml

from e2e.platform import LocalPlatform, localise, namespaced
from e2e.tools import ROOT

# The commit CHANGELOG calls 1.0.0 (the last before its first Unreleased entries); tag v1.0.0.
V1_0_0 = "fbadc78e8a6145b65ef636c4b9b2477b8c5c3e10"
KEPT = (
    "aws:ecr/repository:Repository::ecr-web",
    "aws:ecr/repository:Repository::ecr-api",
    "aws:ecr/repository:Repository::ecr-worker",
    "kubernetes:helm.sh/v3:Release::buildkit-release",
    "gitlab:index/userRunner:UserRunner::buildkit-runner",
    "kubernetes:core/v1:Secret::buildkit-token",
)


def release_commit() -> str:
    tagged = subprocess.run(["git", "rev-parse", "--verify", "--quiet", "v1.0.0^{commit}"], cwd=ROOT, capture_output=True, text=True)
    commit = tagged.stdout.strip() or V1_0_0
    assert commit == V1_0_0, f"tag v1.0.0 points at {commit}, CHANGELOG's 1.0.0 is {V1_0_0}"
    return commit


def upgrade_state_commands() -> list[list[str]]:
    """Every `pulumi state ...` command UPGRADE.md tells a prod stack to run, in document order."""
    commands = []
    for line in (ROOT / "UPGRADE.md").read_text().splitlines():
        found = re.match(r"\s*pulumi state (unprotect|protect) '(urn:pulumi:prod::[^']+)'\s*$", line)
        if found:
            commands.append(["state", found.group(1), "--yes", found.group(2)])
    return commands


def old_prod_config() -> dict[str, Any]:
    text = subprocess.run(
        ["git", "show", f"{release_commit()}:Pulumi.prod.yaml"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return namespaced(dict(yaml.safe_load(text)["config"]), "prod")


def head_prod_config() -> dict[str, Any]:
    config = namespaced(dict(yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())["config"]), "prod")
    credentials = config["gitlab-buildkit-runner:credentials"]
    credentials.pop("oidcProvider")  # "In an account of its own, remove this line" (Pulumi.prod.yaml)
    return config


def test_prod_upgrades_from_1_0_0_by_the_upgrade_guide(platform: LocalPlatform) -> None:
    old = platform.project("v1.0.0", ref=release_commit())
    platform.new_stack("prod", old_prod_config(), old)
    platform.pulumi("up", "--yes", "--skip-preview", project=old, stack="prod", timeout=1800)
    before = {r["urn"]: r for r in platform.export(old, "prod")["deployment"]["resources"]}

    head = platform.project()
    # The stack file travels with the checkout (its passphrase salt included); its config becomes HEAD's.
    stack_file = yaml.safe_load((old / "Pulumi.prod.yaml").read_text())
    stack_file["config"] = localise(head_prod_config(), platform.chart_repository)
    (head / "Pulumi.prod.yaml").write_text(yaml.safe_dump(stack_file, sort_keys=False))
    commands = upgrade_state_commands()
    assert commands, "UPGRADE.md gives no state command for prod"
    for command in commands:
        platform.pulumi(*command, project=head, stack="prod")
    preview = platform.pulumi("preview", "--json", project=head, stack="prod", timeout=1800)
    steps = json.loads(preview.stdout)["steps"]
    replaced = sorted(s["urn"] for s in steps if s["op"] in ("replace", "create-replacement", "delete-replaced"))
    for kept in KEPT:
        assert not [urn for urn in replaced if urn.endswith(kept)], (kept, replaced)
    platform.pulumi(*platform.up_args(head), project=head, stack="prod", timeout=1800)
    platform.pulumi("preview", "--expect-no-changes", project=head, stack="prod")

    after = {r["urn"]: r for r in platform.export(head, "prod")["deployment"]["resources"]}
    for kept in KEPT:
        (old_urn,) = [u for u in before if u.endswith(kept)]
        (new_urn,) = [u for u in after if u.endswith(kept)]
        assert before[old_urn]["id"] == after[new_urn]["id"], kept  # the same object, never recreated
    pins = set(json.loads((ROOT / "tests" / "fixtures" / "urns.json").read_text())["prod"])
    oidc = {u for u in after if "GitlabOidcProvider" in u}  # this account's own provider ('create')
    stack = {u for u, r in after.items() if r["type"] == "pulumi:pulumi:Stack"}
    assert set(after) - oidc - stack == pins - stack, sorted((set(after) - oidc - stack) ^ (pins - stack))
