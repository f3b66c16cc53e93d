"""The credential-free merge-request diff: two offline synths compared."""

from __future__ import annotations

import json
from pathlib import Path

from cicd.desired_state_diff import diff, main, render
from verify.harness import load_stack_file
from verify.policy_client import PolicyPack
from verify.synth import synth_stack


def test_a_change_in_config_shows_as_created_updated_and_deleted_resources(tmp_path: Path) -> None:
    with PolicyPack() as pack:
        base = load_stack_file("dev")
        head = json.loads(json.dumps(base))
        head["registry"]["applications"] = [a for a in head["registry"]["applications"] if a["name"] != "worker"] + [
            {"name": "billing", "projectPath": "acme/billing"}
        ]
        head["runner"]["concurrent"] = 6
        assert synth_stack("dev", config=base, pack=pack, build_dir=tmp_path / "base").failures == []
        assert synth_stack("dev", config=head, pack=pack, build_dir=tmp_path / "head").failures == []
    out = tmp_path / "diff.md"
    report = tmp_path / "tf.json"
    assert (
        main(
            [
                "--base",
                str(tmp_path / "base"),
                "--head",
                str(tmp_path / "head"),
                "--stack",
                "dev",
                "--output",
                str(out),
                "--terraform-report",
                str(report),
            ]
        )
        == 0
    )
    note = out.read_text()
    assert "- create `ecr-billing` (`aws:ecr/repository:Repository`)" in note
    assert "- delete `ecr-worker` (`aws:ecr/repository:Repository`)" in note
    assert "- update `buildkit-release` (`kubernetes:helm.sh/v3:Release`): `values.concurrent`" in note
    assert "**Attention:**" in note
    counts = json.loads(report.read_text())
    assert counts["create"] > 0 and counts["delete"] > 0 and counts["update"] >= 1


def test_secrets_are_never_in_the_diff() -> None:
    base = {"u": {"type": "t", "inputs": {"value": "[secret]"}}}
    head = {"u": {"type": "t", "inputs": {"value": "[secret]", "x": 1}}}
    assert diff(base, head)["update"] == [("u", ["x"])]


def test_names_cannot_become_quick_actions() -> None:
    note = render("dev", {"create": [("urn:pulumi:dev::p::t::x\n/approve", [])], "update": [], "delete": []})
    assert "\n/approve" not in note


def test_unreadable_head_fails_and_missing_base_counts_everything_new(tmp_path: Path) -> None:
    assert main(["--base", str(tmp_path / "none"), "--head", str(tmp_path / "none"), "--stack", "dev"]) == 2
    (tmp_path / "head" / "dev").mkdir(parents=True)
    (tmp_path / "head" / "dev" / "resources.json").write_text(json.dumps([{"urn": "urn:pulumi:dev::p::t::a", "type": "t", "inputs": {}}]))
    assert main(["--base", str(tmp_path / "none"), "--head", str(tmp_path / "head"), "--stack", "dev"]) == 0
