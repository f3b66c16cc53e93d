"""Merge-request preview note: `pulumi preview --json` (+ policy events) -> Markdown -> one note per stack.

Inputs, as the Pulumi CLI writes them:
- `--event-log <file>` of `pulumi preview --diff`: one apitype.EngineEvent per line. `resourcePreEvent`
  carries each step (`metadata`: `op`, `urn`, `old`/`new` state with `inputs`, `diffs`,
  `detailedDiff{path: {kind, inputDiff}}`; secrets blinded as "[secret]"), `summaryEvent` the
  `resourceChanges` counts, `policyEvent` the violations (`policyName`, `enforcementLevel`, ...).
  This is what CI uses: one preview gives the human `--diff` log and the machine-readable events.
- optionally the digest of `pulumi preview --json` (pkg/display/json.go `PreviewDigest`: `steps[]`,
  `changeSummary`, `diagnostics[]`), used instead of the events for steps and counts. It has no policy
  results (the JSON writer skips policy events), so violations always come from the event log.

    python -m cicd.preview_note --stack prod --events events.jsonl [--preview preview.json] \
        [--post] [--terraform-report tf.json] [--max-chars 60000]

With --post it finds its own note on the merge request by a hidden marker and updates it in place
(python-gitlab; CI_API_V4_URL, CI_PROJECT_ID, CI_MERGE_REQUEST_IID from GitLab, token from
$PREVIEW_NOTE_TOKEN: a project access token with `api` scope).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MARKER = "<!-- gitlab-buildkit-runner:preview:{stack} -->"
SECRET_SIG_KEY = "4dabf18193072939515e22adb298388d"
REDACTED = "[secret]"
# Property names whose values never go into a note, whatever the engine marked.
SENSITIVE_KEY = re.compile(r"(token|password|secret|private[_-]?key|credential)", re.IGNORECASE)
CHANGE_OPS = ("create", "update", "replace", "delete")
REPLACE_OPS = {"replace", "create-replacement", "delete-replaced"}
OP_LABEL = {
    "create": "create",
    "update": "update",
    "replace": "**replace**",
    "create-replacement": "**replace**",
    "delete-replaced": "**replace**",
    "delete": "**delete**",
    "import": "import",
}
DEFAULT_MAX_CHARS = 60_000  # GitLab allows 1,000,000 per note; a readable note is far smaller
VALUE_CHARS = 80
# Values that look like credentials are never printed, even when the engine did not mark them secret:
# GitLab tokens (glpat-, glrt-, ...), AWS access key ids, 40-character AWS secret keys, JWTs (ID
# tokens), PEM private keys. Ref: https://docs.gitlab.com/security/tokens/#token-prefixes
SECRET_LIKE = re.compile(
    r"gl[a-z]{1,5}-[A-Za-z0-9_-]{8,}"
    r"|(?:AKIA|ASIA)[A-Z0-9]{16}"
    r"|(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])"
    r"|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----"
)
# Every character that ends a line for GitLab's Markdown or its quick-action parser.
LINE_BREAKS = re.compile(r"[\r\n\v\f\x85\u2028\u2029]+")


@dataclass(frozen=True)
class PolicyViolation:
    policy: str
    pack: str
    level: str
    urn: str
    message: str


def redact(value: Any, key: str = "") -> Any:
    """Secrets ("[secret]", engine secret envelopes), sensitive-looking keys and credential-looking
    values become [secret]."""
    if key and SENSITIVE_KEY.search(key):
        return REDACTED
    if isinstance(value, dict):
        if SECRET_SIG_KEY in value:
            return REDACTED
        return {k: redact(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, key) for v in value]
    if isinstance(value, str):
        return SECRET_LIKE.sub(REDACTED, value)
    return value


def text(value: Any) -> str:
    """Any rendered value, safe in a note: on one line (GitLab runs quick actions such as /approve or
    /merge found at the start of a line of a note created through the API), no leading '/', no HTML,
    no table break, nothing that looks like a credential."""
    out = LINE_BREAKS.sub(" ", str(value))
    out = SECRET_LIKE.sub(REDACTED, out)
    out = out.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")
    return "\\" + out if out.lstrip().startswith("/") else out


def code(value: Any) -> str:
    """A value as inline code: backticks inside cannot end the span, line breaks cannot start a line."""
    out = SECRET_LIKE.sub(REDACTED, LINE_BREAKS.sub(" ", str(value))).replace("`", "'").replace("|", "\\|")
    # Angle brackets as look-alikes: no HTML (or a copy of our marker) can form, and the value stays readable.
    return "`" + out.replace("<", "\u2039").replace(">", "\u203a") + "`"


def _resource_name(urn: str) -> str:
    return urn.rsplit("::", 1)[-1]


def _resource_type(urn: str) -> str:
    return urn.rsplit("::", 2)[-2].split("$")[-1] if "::" in urn else ""


def _lookup(document: Any, path: str) -> Any:
    """Value at a detailedDiff path such as `spec.template.containers[0].image` (None when absent)."""
    current = document
    for part in re.findall(r"[^.\[\]]+", path):
        if isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        elif isinstance(current, dict) and part in current:
            current = current[part]
        else:
            return None
    return current


def _short(value: Any) -> str:
    raw = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    out = text(raw)
    return out if len(out) <= VALUE_CHARS else out[: VALUE_CHARS - 1] + "…"


def changed_properties(step: Mapping[str, Any]) -> list[str]:
    """`path: old -> new` per changed property, secrets redacted."""
    old = redact((step.get("oldState") or {}).get("inputs") or {})
    new = redact((step.get("newState") or {}).get("inputs") or {})
    detailed = step.get("detailedDiff") or {}
    paths = sorted(detailed) or sorted(set(step.get("diffReasons") or []) | set(step.get("replaceReasons") or []))
    replace_reasons = set(step.get("replaceReasons") or [])
    lines = []
    for path in paths:
        kind = (detailed.get(path) or {}).get("kind", "update")
        forces = kind.endswith("-replace") or path in replace_reasons
        before, after = _lookup(old, path), _lookup(new, path)
        if any(SENSITIVE_KEY.search(part) for part in re.findall(r"[^.\[\]]+", path)):
            before = after = REDACTED
        if kind.startswith("add"):
            change = f"+ {_short(after)}"
        elif kind.startswith("delete"):
            change = f"- {_short(before)}"
        else:
            change = f"{_short(before)} → {_short(after)}"
        lines.append(f"{code(path)}: {change}" + (" (forces replacement)" if forces else ""))
    return lines


def summary_counts(digest: Mapping[str, Any]) -> dict[str, int]:
    summary = {k: int(v) for k, v in (digest.get("changeSummary") or {}).items()}
    if not summary:  # older CLIs: count the steps
        for step in digest.get("steps") or []:
            summary[step["op"]] = summary.get(step["op"], 0) + 1
    return {
        "create": summary.get("create", 0),
        "update": summary.get("update", 0),
        "replace": summary.get("replace", 0),
        "delete": summary.get("delete", 0),
        "same": summary.get("same", 0),
    }


def policy_violations(events: Iterable[Mapping[str, Any]]) -> list[PolicyViolation]:
    found = []
    for event in events:
        policy = event.get("policyEvent")
        if policy:
            found.append(
                PolicyViolation(
                    policy=policy.get("policyName", "?"),
                    pack=policy.get("policyPackName", "?"),
                    level=policy.get("enforcementLevel", "advisory"),
                    urn=policy.get("resourceUrn", ""),
                    message=" ".join(str(policy.get("message", "")).split()),
                )
            )
    return found


def digest_from_events(events: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """A PreviewDigest-shaped dict from engine events (resourcePreEvent steps, summaryEvent counts)."""
    steps: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    summary: dict[str, int] = {}
    diagnostics: list[dict[str, Any]] = []
    for event in events:
        if "resourcePreEvent" in event:
            meta = event["resourcePreEvent"].get("metadata") or {}
            key = (meta.get("op", ""), meta.get("urn", ""))
            if key in seen:
                continue
            seen.add(key)
            steps.append(
                {
                    "op": meta.get("op"),
                    "urn": meta.get("urn", ""),
                    "oldState": {"inputs": (meta.get("old") or {}).get("inputs") or {}},
                    "newState": {"inputs": (meta.get("new") or {}).get("inputs") or {}},
                    "diffReasons": meta.get("diffs") or [],
                    "detailedDiff": meta.get("detailedDiff"),
                }
            )
        elif "summaryEvent" in event:
            summary = dict(event["summaryEvent"].get("resourceChanges") or {})
        elif "diagnosticEvent" in event:
            diag = event["diagnosticEvent"]
            diagnostics.append({"urn": diag.get("urn", ""), "message": diag.get("message", ""), "severity": diag.get("severity", "")})
    return {"steps": steps, "changeSummary": summary, "diagnostics": diagnostics}


def read_events(path: Path | None) -> list[dict[str, Any]]:
    if path is None or not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def render(
    stack: str, digest: Mapping[str, Any], events: Iterable[Mapping[str, Any]] = (), max_chars: int = DEFAULT_MAX_CHARS, job_url: str = ""
) -> str:
    """The note: marker, summary line, policy violations, changed resources; detail trimmed to fit."""
    counts = summary_counts(digest)
    violations = policy_violations(events)
    mandatory = [v for v in violations if v.level == "mandatory"]
    advisory = [v for v in violations if v.level != "mandatory"]
    changes = ", ".join(f"{counts[op]} to {op}" for op in CHANGE_OPS if counts[op]) or "no changes"
    status = "❌" if mandatory else ("⚠️" if counts["replace"] or counts["delete"] else "✅")
    head = [
        MARKER.format(stack=stack),
        f"### {status} Pulumi preview {code(stack)}: {changes} ({counts['same']} unchanged)",
        f"Policy violations: **{len(mandatory)} mandatory**, {len(advisory)} advisory." if violations else "Policy violations: none.",
    ]
    if counts["replace"] or counts["delete"]:
        head.append(f"> **Attention:** {counts['replace']} replacement(s) and {counts['delete']} deletion(s).")
    footer = f"\n_Full output in the job artifacts{': ' + job_url if job_url else ''}._"

    detail: list[str] = []
    for level, group in (("Mandatory", mandatory), ("Advisory", advisory)):
        if group:
            detail.append(f"\n#### {level} policy violations\n")
            detail += [
                f"- {code(v.policy)} on {code(_resource_name(v.urn) or 'stack')}: {_short(v.message) if len(v.message) > 300 else text(v.message)}"
                for v in group
            ]
    diagnostics = [d for d in digest.get("diagnostics") or [] if d.get("severity") in ("error", "warning")]
    if diagnostics:
        detail.append("\n#### Diagnostics\n")
        detail += [f"- {text(d['severity'])}: {_short(' '.join(str(d.get('message', '')).split()))}" for d in diagnostics]
    steps = [s for s in digest.get("steps") or [] if s.get("op") not in ("same", "read", "refresh")]
    if steps:
        detail += ["\n#### Changed resources\n", "| operation | resource | type | changes |", "|---|---|---|---|"]
        for step in steps:
            op = OP_LABEL.get(step["op"], step["op"])
            props = "<br>".join(changed_properties(step)) if step["op"] not in ("create", "delete") else ""
            detail.append(f"| {text(op)} | {code(_resource_name(step['urn']))} | {code(_resource_type(step['urn']))} | {props} |")

    note = "\n".join(head)
    budget = max_chars - len(note) - len(footer) - 200
    kept: list[str] = []
    for index, line in enumerate(detail):
        if sum(len(x) + 1 for x in kept) + len(line) + 1 > budget:
            dropped = len(detail) - index
            kept.append(f"\n_…{dropped} more line(s) trimmed to fit the note; see the job artifacts._")
            break
        kept.append(line)
    return note + "\n" + "\n".join(kept) + footer


def terraform_report(digest: Mapping[str, Any]) -> dict[str, int]:
    """GitLab's artifacts:reports:terraform format, so the MR widget shows the counts."""
    counts = summary_counts(digest)
    return {"create": counts["create"] + counts["replace"], "update": counts["update"], "delete": counts["delete"] + counts["replace"]}


def merge_requests_of_branch(*, api_url: str, token: str, project_id: str, branch: str) -> list[str]:
    """IIDs of the open merge requests whose source is `branch` of this project (a protected-branch
    pipeline previews for them)."""
    import gitlab

    client = gitlab.Gitlab(api_url.removesuffix("/").removesuffix("/api/v4"), private_token=token)
    project = client.projects.get(project_id, lazy=True)
    found = project.mergerequests.list(state="opened", source_branch=branch, iterator=True)
    return [str(mr.iid) for mr in found if str(getattr(mr, "source_project_id", project_id)) == str(project_id)]


def upsert_note(*, api_url: str, token: str, project_id: str, mr_iid: str, stack: str, body: str) -> str:
    """Update this stack's note (found by its marker) or create it. Returns 'updated' or 'created'."""
    import gitlab

    client = gitlab.Gitlab(api_url.removesuffix("/").removesuffix("/api/v4"), private_token=token)
    mr = client.projects.get(project_id, lazy=True).mergerequests.get(mr_iid, lazy=True)
    marker = MARKER.format(stack=stack)
    # Only a note this token's own user wrote: anyone can post a note that carries the marker, and
    # editing theirs would put our text under their name (or theirs under ours).
    client.auth()
    me = client.user.id if client.user is not None else None
    for note in mr.notes.list(iterator=True, sort="asc", order_by="created_at"):
        author = (getattr(note, "author", None) or {}).get("id")
        if me is not None and author == me and (note.body or "").startswith(marker):
            note.body = body
            note.save()
            return "updated"
    mr.notes.create({"body": body})
    return "created"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", required=True)
    parser.add_argument("--events", type=Path, required=True, help="the file `pulumi preview --event-log` wrote")
    parser.add_argument("--preview", type=Path, help="optional output of `pulumi preview --json` (steps and counts)")
    parser.add_argument("--max-chars", type=int, default=DEFAULT_MAX_CHARS)
    parser.add_argument("--output", type=Path, help="also write the Markdown here")
    parser.add_argument("--terraform-report", type=Path, help="write GitLab's terraform report JSON here")
    parser.add_argument("--post", action="store_true", help="create or update the merge-request note")
    parser.add_argument(
        "--source-branch",
        help="in a branch pipeline (no CI_MERGE_REQUEST_IID): post to every open merge request from this branch",
    )
    args = parser.parse_args(argv)

    try:
        events = read_events(args.events)
        digest = json.loads(args.preview.read_text()) if args.preview else digest_from_events(events)
    except (OSError, json.JSONDecodeError) as exc:
        print(f"cannot read the preview output: {exc}", file=sys.stderr)
        return 2
    if not args.preview and not any("summaryEvent" in e for e in events):
        print(f"{args.events} has no summaryEvent: the preview did not finish (see the job log)", file=sys.stderr)
    body = render(args.stack, digest, events, args.max_chars, os.environ.get("CI_JOB_URL", ""))
    if args.output:
        args.output.write_text(body)
    if args.terraform_report:
        args.terraform_report.write_text(json.dumps(terraform_report(digest)))
    if args.post:
        needed = ["CI_API_V4_URL", "CI_PROJECT_ID", *([] if args.source_branch else ["CI_MERGE_REQUEST_IID"]), "PREVIEW_NOTE_TOKEN"]
        missing = [v for v in needed if not os.environ.get(v)]
        if missing:
            print(
                f"--post needs {', '.join(missing)} (set by GitLab in merge-request pipelines; the token is a CI variable)", file=sys.stderr
            )
            return 2
        api = {"api_url": os.environ["CI_API_V4_URL"], "token": os.environ["PREVIEW_NOTE_TOKEN"], "project_id": os.environ["CI_PROJECT_ID"]}
        iids = (
            [os.environ["CI_MERGE_REQUEST_IID"]] if not args.source_branch else merge_requests_of_branch(**api, branch=args.source_branch)
        )
        if not iids:
            print(f"no open merge request from {args.source_branch}: nothing to post (the preview is in the job log)")
        for iid in iids:
            action = upsert_note(**api, mr_iid=iid, stack=args.stack, body=body)
            print(f"preview note for {args.stack} {action} (!{iid})")
    else:
        print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
