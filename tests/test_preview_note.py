"""Merge-request preview note: formatter on realistic `pulumi preview --json` fixtures, and the GitLab
calls against a local HTTP server on 127.0.0.1 that checks every request (this is not a real GitLab)."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from json_http import JsonHandler

from cicd.preview_note import MARKER, digest_from_events, main, read_events, render, terraform_report, upsert_note

FIXTURES = Path(__file__).parent / "fixtures" / "preview"


@pytest.fixture
def digest() -> dict[str, Any]:
    return json.loads((FIXTURES / "prod-preview.json").read_text())


@pytest.fixture
def events() -> list[dict[str, Any]]:
    return read_events(FIXTURES / "prod-events.jsonl")


def test_event_log_alone_gives_the_same_note(digest: dict, events: list) -> None:
    """CI runs one `pulumi preview --diff --event-log`: steps and counts come from the events."""
    full = read_events(FIXTURES / "prod-preview-events.jsonl")
    from_events = digest_from_events(full)
    assert [(s["op"], s["urn"]) for s in from_events["steps"]] == [(s["op"], s["urn"]) for s in digest["steps"]]
    assert from_events["changeSummary"] == digest["changeSummary"]
    assert render("prod", from_events, full) == render("prod", digest, events)


def test_summary_line_and_marker(digest: dict, events: list) -> None:
    note = render("prod", digest, events)
    lines = note.splitlines()
    assert lines[0] == "<!-- gitlab-buildkit-runner:preview:prod -->"
    assert lines[1] == "### ❌ Pulumi preview `prod`: 1 to create, 3 to update, 1 to replace, 1 to delete (40 unchanged)"
    assert lines[2] == "Policy violations: **1 mandatory**, 1 advisory."
    assert "> **Attention:** 1 replacement(s) and 1 deletion(s)." in note


def test_changed_resources_table(digest: dict, events: list) -> None:
    note = render("prod", digest, events)
    assert "| create | `ecr-billing` | `aws:ecr/repository:Repository` |  |" in note
    assert (
        "| update | `buildkit-release` | `kubernetes:helm.sh/v3:Release` | `values.concurrent`: 8 → 16<br>`version`: 0.85.0 → 0.86.0 |"
        in note
    )
    assert (
        "| **replace** | `buildkit-runner` | `gitlab:index/userRunner:UserRunner` | `groupId`: + 1234567<br>`projectId`: - 42<br>`runnerType`: project_type → group_type (forces replacement) |"
        in note
    )
    assert "| **delete** | `ecr-legacy` |" in note
    assert "gitlab-buildkit-runner-prod" not in note.split("#### Changed resources")[1]  # 'same' steps are not listed


def test_policy_violations_grouped_by_level(digest: dict, events: list) -> None:
    note = render("prod", digest, events)
    mandatory = note.index("#### Mandatory policy violations")
    advisory = note.index("#### Advisory policy violations")
    assert mandatory < note.index("`aws-ecr-immutable-tags` on `ecr-billing`") < advisory
    assert advisory < note.index("`gitlab-runner-buildkit-needs` on `buildkit-release`")


def test_secrets_and_sensitive_values_are_redacted(digest: dict, events: list) -> None:
    note = render("prod", digest, events)
    assert "glpat-LEAKED-IN-OLD-STATE" not in note  # sensitive key, even if a state held it in plain text
    assert "v1:abc" not in note  # engine secret envelope
    assert "`token`: [secret] → [secret]" in note
    assert "`value`: [secret] → [secret]" in note


def test_clean_preview() -> None:
    note = render("dev", {"steps": [], "changeSummary": {"same": 44}})
    assert note.splitlines()[1] == "### ✅ Pulumi preview `dev`: no changes (44 unchanged)"
    assert "Policy violations: none." in note and "Changed resources" not in note


def test_size_cap_keeps_the_summary_and_trims_detail(digest: dict, events: list) -> None:
    many = dict(digest)
    template = digest["steps"][1]
    many["steps"] = [{**template, "urn": template["urn"] + f"-{i}"} for i in range(2000)]
    note = render("prod", many, events, max_chars=5000)
    assert len(note) <= 5000
    assert note.splitlines()[1].startswith("### ❌ Pulumi preview `prod`:")
    assert "#### Mandatory policy violations" in note
    assert "more line(s) trimmed to fit the note; see the job artifacts." in note


def test_diagnostics_are_listed(digest: dict) -> None:
    assert "- warning: kubernetes provider: cluster unreachable during preview, using cached schema" in render("prod", digest)


def test_terraform_report_counts(digest: dict) -> None:
    assert terraform_report(digest) == {"create": 2, "update": 3, "delete": 2}


def test_counts_from_steps_when_summary_is_missing(digest: dict) -> None:
    digest.pop("changeSummary")
    assert (
        render("prod", digest).splitlines()[1]
        == "### ⚠️ Pulumi preview `prod`: 1 to create, 3 to update, 1 to replace, 1 to delete (1 unchanged)"
    )


# --- GitLab API against a local recording server --------------------------------------------------


BOT = 42  # the user of the preview token


class FakeGitLab(JsonHandler):
    notes: list[dict[str, Any]] = []
    requests: list[tuple[str, str, dict[str, Any], str | None]] = []

    def _record(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}") if length else {}
        type(self).requests.append((self.command, self.path, body, self.headers.get("PRIVATE-TOKEN")))
        return body

    def do_GET(self) -> None:
        self._record()
        if self.headers.get("PRIVATE-TOKEN") != "glpat-test":
            return self._reply(401, {"message": "401 Unauthorized"})
        if self.path.startswith("/api/v4/user"):
            return self._reply(200, {"id": BOT, "username": "preview-bot"})
        if self.path.startswith("/api/v4/projects/7/merge_requests/3/notes"):
            return self._reply(200, type(self).notes)
        if self.path.startswith("/api/v4/projects/7/merge_requests?"):
            query = self.path.split("?", 1)[1]
            if "state=opened" in query and "source_branch=release%2F1" in query:
                return self._reply(200, [{"iid": 3, "source_project_id": 7}, {"iid": 9, "source_project_id": 99}])
            return self._reply(200, [])
        self._reply(404, {"message": "404 Not found"})

    def do_POST(self) -> None:
        body = self._record()
        note = {"id": 100 + len(type(self).notes), "body": body["body"], "author": {"id": BOT}}
        type(self).notes.append(note)
        self._reply(201, note)

    def do_PUT(self) -> None:
        body = self._record()
        note_id = int(self.path.rsplit("/", 1)[-1])
        for note in type(self).notes:
            if note["id"] == note_id:
                note["body"] = body["body"]
                return self._reply(200, note)
        self._reply(404, {"message": "404 Not found"})


@pytest.fixture
def gitlab_server() -> Iterator[str]:
    FakeGitLab.notes = [
        {"id": 1, "body": "LGTM", "author": {"id": 7}},
        {"id": 2, "body": MARKER.format(stack="staging") + "\nold staging", "author": {"id": BOT}},
    ]
    FakeGitLab.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeGitLab)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/api/v4"
    server.shutdown()


def test_first_push_creates_the_note_then_updates_it_in_place(gitlab_server: str) -> None:
    args = {"api_url": gitlab_server, "token": "glpat-test", "project_id": "7", "mr_iid": "3", "stack": "prod"}
    assert upsert_note(body=MARKER.format(stack="prod") + "\nv1", **args) == "created"
    method, path, body, token = FakeGitLab.requests[-1]
    assert (method, path, token) == ("POST", "/api/v4/projects/7/merge_requests/3/notes", "glpat-test")
    assert body == {"body": MARKER.format(stack="prod") + "\nv1"}
    assert upsert_note(body=MARKER.format(stack="prod") + "\nv2", **args) == "updated"
    method, path, body, token = FakeGitLab.requests[-1]
    assert (method, path, token) == ("PUT", "/api/v4/projects/7/merge_requests/3/notes/102", "glpat-test")
    assert body == {"body": MARKER.format(stack="prod") + "\nv2"}
    assert [n["body"].splitlines()[-1] for n in FakeGitLab.notes] == ["LGTM", "old staging", "v2"]
    assert all(r[0] != "DELETE" for r in FakeGitLab.requests)
    assert {r[1].split("?")[0] for r in FakeGitLab.requests if r[0] == "GET"} == {
        "/api/v4/user",
        "/api/v4/projects/7/merge_requests/3/notes",
    }


def test_other_stacks_note_is_updated_not_duplicated(gitlab_server: str) -> None:
    result = upsert_note(
        api_url=gitlab_server,
        token="glpat-test",
        project_id="7",
        mr_iid="3",
        stack="staging",
        body=MARKER.format(stack="staging") + "\nnew",
    )
    assert result == "updated"
    assert [n["id"] for n in FakeGitLab.notes] == [1, 2]
    assert FakeGitLab.notes[1]["body"].endswith("new")


def test_wrong_token_fails_loudly(gitlab_server: str) -> None:
    import gitlab

    with pytest.raises(gitlab.exceptions.GitlabError):
        upsert_note(api_url=gitlab_server, token="wrong", project_id="7", mr_iid="3", stack="prod", body="x")


def test_cli_posts_with_ci_environment(
    gitlab_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CI_API_V4_URL", gitlab_server)
    monkeypatch.setenv("CI_PROJECT_ID", "7")
    monkeypatch.setenv("CI_MERGE_REQUEST_IID", "3")
    monkeypatch.setenv("PREVIEW_NOTE_TOKEN", "glpat-test")
    report = tmp_path / "tf.json"
    # What CI runs: only the event log of `pulumi preview --diff --event-log ...`.
    events = str(FIXTURES / "prod-preview-events.jsonl")
    code = main(["--stack", "prod", "--events", events, "--post", "--terraform-report", str(report)])
    assert code == 0
    assert "preview note for prod created" in capsys.readouterr().out
    assert json.loads(report.read_text()) == {"create": 2, "update": 3, "delete": 2}
    assert FakeGitLab.notes[-1]["body"].startswith(MARKER.format(stack="prod"))


def test_cli_refuses_to_post_without_ci_environment(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("CI_API_V4_URL", "CI_PROJECT_ID", "CI_MERGE_REQUEST_IID", "PREVIEW_NOTE_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    assert main(["--stack", "prod", "--events", str(FIXTURES / "prod-preview-events.jsonl"), "--post"]) == 2
    assert "--post needs CI_API_V4_URL, CI_PROJECT_ID, CI_MERGE_REQUEST_IID, PREVIEW_NOTE_TOKEN" in capsys.readouterr().err


def test_cli_reports_unreadable_preview(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "preview.json"
    broken.write_text("error: no stack selected")
    assert main(["--stack", "prod", "--events", str(FIXTURES / "prod-events.jsonl"), "--preview", str(broken)]) == 2
    assert "cannot read the preview output" in capsys.readouterr().err


def test_cli_warns_when_the_preview_did_not_finish(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    partial = tmp_path / "events.jsonl"
    partial.write_text("\n".join((FIXTURES / "prod-preview-events.jsonl").read_text().splitlines()[:3]))
    assert main(["--stack", "prod", "--events", str(partial)]) == 0
    assert "has no summaryEvent: the preview did not finish" in capsys.readouterr().err


@pytest.mark.parametrize(
    "body",
    [
        MARKER.format(stack="prod") + "\nplanted by someone else",
        "quoting the bot: " + MARKER.format(stack="prod"),
    ],
)
def test_a_note_by_another_user_is_never_edited_even_with_the_marker(gitlab_server: str, body: str) -> None:
    """Regression: any note containing the marker was edited, whoever wrote it."""
    FakeGitLab.notes.append({"id": 50, "body": body, "author": {"id": 7}})
    args = {"api_url": gitlab_server, "token": "glpat-test", "project_id": "7", "mr_iid": "3", "stack": "prod"}
    assert upsert_note(body=MARKER.format(stack="prod") + "\nours", **args) == "created"
    assert next(n for n in FakeGitLab.notes if n["id"] == 50)["body"] == body
    assert all(not (r[0] == "PUT" and r[1].endswith("/50")) for r in FakeGitLab.requests)


QUICK_ACTION = re.compile(r"^\s*/", re.MULTILINE)


@pytest.mark.parametrize(
    "name",
    [
        "web\n/approve",
        "web\r\n/merge",
        "web\u2028/approve",
        "web\x0b/unlabel ~security",
        "/approve",
        "`web`\n/merge",
        "web<!-- gitlab-buildkit-runner:preview:prod -->",
    ],
)
def test_rendered_names_and_values_cannot_become_quick_actions(name: str) -> None:
    """Resource names, URNs and values with line breaks could put /approve or /merge on a line of their own."""
    urn = f"urn:pulumi:prod::p::aws:ecr/repository:Repository::{name}"
    digest = {
        "steps": [
            {
                "op": "update",
                "urn": urn,
                "oldState": {"inputs": {"name": "a"}},
                "newState": {"inputs": {"name": name}},
                "detailedDiff": {"name": {"kind": "update"}},
            },
            {"op": "create", "urn": urn},
        ],
        "changeSummary": {"update": 1, "create": 1},
    }
    events = [{"policyEvent": {"policyName": "p", "enforcementLevel": "mandatory", "resourceUrn": urn, "message": f"bad {name}"}}]
    note = render("prod", digest, events)
    body = note.split("\n", 1)[1]  # after our own marker
    assert not QUICK_ACTION.search(body), body
    assert "<!--" not in body
    assert "\u2028" not in body and "\x0b" not in body and "\r" not in body


@pytest.mark.parametrize(
    "value",
    [
        "AKIAIOSFODNN7EXAMPLE",
        "glpat-AbCdEfGh1234567890",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJwcm9qZWN0In0.c2lnbmF0dXJl",
    ],
)
def test_values_that_look_like_credentials_are_never_printed(value: str) -> None:
    urn = "urn:pulumi:prod::p::gitlab:index/projectVariable:ProjectVariable::ci-x"
    digest = {
        "steps": [
            {
                "op": "update",
                "urn": urn,
                "oldState": {"inputs": {"value": "old"}},
                "newState": {"inputs": {"value": value}},
                "detailedDiff": {"value": {"kind": "update"}},
            }
        ],
        "changeSummary": {"update": 1},
    }
    events = [{"policyEvent": {"policyName": "p", "enforcementLevel": "advisory", "resourceUrn": urn, "message": f"saw {value}"}}]
    note = render("prod", digest, events)
    assert value not in note and "[secret]" in note


def test_a_protected_branch_pipeline_posts_to_the_merge_requests_of_its_branch(
    gitlab_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Previews with credentials run in branch pipelines of protected branches, never in MR pipelines."""
    events = tmp_path / "events.jsonl"
    events.write_text(json.dumps({"summaryEvent": {"resourceChanges": {"same": 3}}}) + "\n")
    monkeypatch.setenv("CI_API_V4_URL", gitlab_server)
    monkeypatch.setenv("CI_PROJECT_ID", "7")
    monkeypatch.setenv("PREVIEW_NOTE_TOKEN", "glpat-test")
    monkeypatch.delenv("CI_MERGE_REQUEST_IID", raising=False)
    assert main(["--stack", "prod", "--events", str(events), "--post", "--source-branch", "release/1"]) == 0
    assert "preview note for prod created (!3)" in capsys.readouterr().out
    posts = [r for r in FakeGitLab.requests if r[0] == "POST"]
    assert [r[1] for r in posts] == ["/api/v4/projects/7/merge_requests/3/notes"]  # not the fork's MR 9
    assert main(["--stack", "prod", "--events", str(events), "--post", "--source-branch", "other"]) == 0
    assert "no open merge request from other" in capsys.readouterr().out
