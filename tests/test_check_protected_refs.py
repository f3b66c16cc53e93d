"""The drift job's warning for trusted refs that are not protected, against a local GitLab stand-in."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer

import pytest
from conftest import make_config
from json_http import JsonHandler

from cicd.check_protected_refs import trusted_refs, unprotected
from components.config import parse_config

PROTECTED = {
    ("acme%2Fweb", "protected_branches"): [{"name": "main"}],
    ("acme%2Fapi", "protected_branches"): [{"name": "release/*"}],  # a wildcard rule
    ("acme%2Fapi", "protected_tags"): [],
    ("acme%2Finfra", "protected_branches"): [{"name": "main"}],
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
    ]
    return parse_config(
        make_config(credentials={"mode": "oidc", "oidcSubjects": subjects}, preview={"projectPath": "acme/infra", "refs": ["main"]})
    )


def test_trusted_refs_are_the_push_and_preview_subjects() -> None:
    assert trusted_refs(config()) == [
        ("acme/api", "branch", "release/2"),
        ("acme/api", "tag", "v1.0.0"),
        ("acme/infra", "branch", "main"),
        ("acme/web", "branch", "hotfix"),
        ("acme/web", "branch", "main"),
    ]


def test_unprotected_trusted_refs_are_warned_about(gitlab_url: str) -> None:
    warnings = unprotected(gitlab_url, "glpat-read", trusted_refs(config()))
    assert [w.split(" is trusted")[0] for w in warnings] == ["WARNING: acme/api tag 'v1.0.0'", "WARNING: acme/web branch 'hotfix'"]


def test_a_wrong_token_is_an_error_the_cli_turns_into_a_warning(gitlab_url: str) -> None:
    import gitlab

    with pytest.raises(gitlab.exceptions.GitlabError):
        unprotected(gitlab_url, "wrong", trusted_refs(config()))
