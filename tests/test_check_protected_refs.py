"""The drift job's warning for trusted refs that are not protected, against a local GitLab stand-in."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer

import pytest
from conftest import make_config
from json_http import JsonHandler

from cicd.check_protected_refs import ProtectedRules, covered, main, trusted_refs, unprotected, untrusted_builds, untrusted_previews
from components.config import parse_config

PROTECTED = {
    ("acme%2Fweb", "protected_branches"): [{"name": "main"}],
    ("acme%2Fapi", "protected_branches"): [{"name": "release/*"}],  # a wildcard rule
    ("acme%2Fapi", "protected_tags"): [],
    ("acme%2Finfra", "protected_branches"): [{"name": "main"}, {"name": "infra/*"}, {"name": "release/*"}],
    ("acme%2Fweb", "protected_tags"): [{"name": "v*"}],
}


class FakeGitLab(JsonHandler):
    def do_GET(self) -> None:
        if self.headers.get("PRIVATE-TOKEN") != "glpat-read":
            return self._reply(401, {"message": "401 Unauthorized"})
        parts = self.path.split("?")[0].split("/")  # /api/v4/projects/<id>/<kind>
        key = (parts[4], parts[5]) if len(parts) > 5 else None
        if key in PROTECTED:
            return self._reply(200, PROTECTED[key])
        self._reply(404, {"message": "404 Not found"})


@pytest.fixture
def gitlab_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeGitLab)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def config():  # type: ignore[no-untyped-def]
    subjects = [
        {"projectPath": "acme/web", "ref": "main"},
        {"projectPath": "acme/web", "ref": "hotfix"},
        {"projectPath": "acme/api", "ref": "release/2"},
        {"projectPath": "acme/api", "refType": "tag", "ref": "v1.0.0"},
        {"projectPath": "acme/web", "refType": "tag", "ref": "v*"},
    ]
    return parse_config(
        make_config(
            credentials={"mode": "oidc", "oidcSubjects": subjects},
            preview={"projectPath": "acme/infra", "refs": ["infra/*"], "stateBucket": "state"},
        )
    )


def test_trusted_refs_are_the_push_and_preview_subjects() -> None:
    assert trusted_refs(config()) == [
        ("acme/api", "branch", "release/2"),
        ("acme/api", "tag", "v1.0.0"),
        ("acme/infra", "branch", "infra/*"),
        ("acme/web", "branch", "hotfix"),
        ("acme/web", "branch", "main"),
        ("acme/web", "tag", "v*"),
    ]


def test_unprotected_trusted_refs_are_warned_about(gitlab_url: str) -> None:
    warnings = unprotected(ProtectedRules(gitlab_url, "glpat-read"), trusted_refs(config()))
    assert [w.split(" is trusted")[0] for w in warnings] == ["WARNING: acme/api tag 'v1.0.0'", "WARNING: acme/web branch 'hotfix'"]


def test_a_wrong_token_is_an_error_the_cli_turns_into_a_warning(gitlab_url: str) -> None:
    import gitlab

    with pytest.raises(gitlab.exceptions.GitlabError):
        unprotected(ProtectedRules(gitlab_url, "wrong"), trusted_refs(config()))


@pytest.mark.parametrize(
    ("ref", "rules", "expected"),
    [
        ("v*", ["v*"], True),
        ("v1.*", ["v*"], True),  # every v1.<x> is a v<y>
        ("v*", ["v1*"], False),  # v2.0 matches the trust, no rule protects it
        ("v*", ["v1*", "v2*", "v3*", "v4*", "v5*", "v6*", "v7*", "v8*", "v9*", "v0*"], False),  # a union: reported, not proven
        ("*", ["release/*"], False),
        ("release/2", ["release/*"], True),  # GitLab's '*' crosses '/'
        ("release/2/x", ["release/*"], True),
        ("infra/*", ["infra/*"], True),
        ("infra/*", ["infra/a*"], False),
        ("main", ["ma?n"], False),  # '?' is literal in GitLab rules
        ("main", ["[m]ain"], False),
    ],
)
def test_a_trusted_pattern_is_covered_only_when_every_match_is_protected(ref: str, rules: list[str], expected: bool) -> None:
    assert covered(ref, rules) is expected


def test_protected_branches_the_preview_role_does_not_trust_are_named(gitlab_url: str) -> None:
    """The preview job runs on every protected branch but the default: release/* would get refused previews."""
    cfg = config()
    assert untrusted_previews(ProtectedRules(gitlab_url, "glpat-read"), cfg) == [
        "WARNING: protected branch 'release/*' of acme/infra runs the preview job, but preview.refs ['infra/*'] does not cover "
        "it: STS refuses its previews. Add it (or a wildcard covering it) to preview.refs."
    ]


def test_the_deploy_gate_refuses_an_unprotected_trusted_ref(
    gitlab_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import cicd.check_protected_refs as module

    cfg = config()
    monkeypatch.setattr(module, "load_stack_file", lambda stack: {})
    monkeypatch.setattr(
        module, "parse_config", lambda raw, stack: cfg.model_copy(update={"gitlab": cfg.gitlab.model_copy(update={"url": gitlab_url})})
    )
    monkeypatch.setenv("GITLAB_TOKEN", "glpat-read")
    assert main(["--stack", "dev"]) == 0  # the drift job: warnings
    assert main(["--stack", "dev", "--require"]) == 1  # the deploy job: refused
    out = capsys.readouterr().out
    assert "ERROR: acme/web branch 'hotfix' is trusted" in out and "ERROR: acme/api tag 'v1.0.0' is trusted" in out
    monkeypatch.delenv("GITLAB_TOKEN")
    assert main(["--stack", "dev", "--require"]) == 1
    assert main(["--stack", "dev"]) == 0


def test_protected_refs_the_push_roles_do_not_trust_are_named(gitlab_url: str) -> None:
    """The template's default rules build every protected ref: acme/api's 'release/*' branches are protected
    but its role trusts only release/2; acme/web's protected tags 'v*' are trusted."""
    warnings = untrusted_builds(ProtectedRules(gitlab_url, "glpat-read"), config())
    assert [w.split(" runs the build template")[0] for w in warnings] == ["WARNING: protected branch 'release/*' of acme/api"]
    assert "trusts only branches ['release/2']" in warnings[0]
