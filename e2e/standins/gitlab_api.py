"""A **stand-in** of the GitLab REST API endpoints the stack's GitLab resources call, on 127.0.0.1.

No GitLab can run here. This serves exactly what the `gitlab` stand-in provider plugin
(`e2e/standins/gitlab_provider.py`) calls for `gitlab.UserRunner`, `gitlab.ProjectVariable` and
`gitlab.GroupVariable`, with GitLab's own rules where the stack depends on them:
- every request needs the provider's token (`PRIVATE-TOKEN`), so a stack whose token never reached
  the provider fails as it would against GitLab (401);
- `POST /user/runners` answers a `glrt-` token once; `GET /runners/:id` never shows it again;
- a masked variable's value must satisfy GitLab's masking requirements (400 otherwise), a variable is
  unique per (key, environment_scope), and `filter[environment_scope]` selects one.
Ref: https://docs.gitlab.com/api/users/#create-a-runner-linked-to-a-user ;
https://docs.gitlab.com/api/project_level_variables/ ; https://docs.gitlab.com/api/group_level_variables/ ;
https://docs.gitlab.com/ci/variables/#mask-a-cicd-variable (masking requirements).

    python -m e2e.standins.gitlab_api --token T --state FILE   # prints its URL on the first line
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import secrets
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

# GitLab's masking requirement: 8 characters or more, one line, the Base64 alphabet (RFC 4648, both
# alphabets) and @ : . ~ (gitlab-org/gitlab#367220, #330650: the long-standing MASK_REGEX).
MASKABLE = re.compile(r"[A-Za-z0-9+/=@:.~_\-]{8,}")
RUNNER_FIELDS = (
    "runner_type",
    "group_id",
    "project_id",
    "description",
    "tag_list",
    "run_untagged",
    "access_level",
    "locked",
    "maximum_timeout",
    "paused",
)
VARIABLE_FIELDS = ("key", "value", "variable_type", "protected", "masked", "environment_scope", "raw", "description")


class GitlabState:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.data: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {"next_id": 1000, "runners": {}, "variables": {}}

    def save(self) -> None:
        self.path.write_text(json.dumps(self.data, indent=1, sort_keys=True))


def _variable_error(body: dict[str, Any]) -> str | None:
    if not re.fullmatch(r"[A-Za-z0-9_]{1,255}", str(body.get("key", ""))):
        return "key is invalid: only letters, digits and '_' are allowed, 255 at most"
    if body.get("masked") and not MASKABLE.fullmatch(str(body.get("value", ""))):
        return "value is invalid: it cannot be masked (8 characters or more, one line, Base64 alphabet and @:.~-_ only)"
    if body.get("variable_type", "env_var") not in ("env_var", "file"):
        return "variable_type does not have a valid value"
    return None


def make_handler(state: GitlabState, token: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _reply(self, status: int, body: Any = None) -> None:
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> dict[str, Any]:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b"{}"
            return dict(json.loads(raw or b"{}"))

        def _route(self, method: str) -> None:
            if self.headers.get("PRIVATE-TOKEN") != token:
                return self._reply(401, {"message": "401 Unauthorized"})
            url = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qs(url.query)
            parts = [urllib.parse.unquote(p) for p in url.path.split("/") if p]
            if parts[:2] != ["api", "v4"]:
                return self._reply(404, {"message": "404 Not Found"})
            parts = parts[2:]
            with state.lock:
                if parts == ["user", "runners"] and method == "POST":
                    return self._create_runner(self._body())
                if len(parts) == 2 and parts[0] == "runners":
                    return self._runner(method, parts[1])
                if len(parts) >= 3 and parts[0] in ("projects", "groups") and parts[2] == "variables":
                    scope = (query.get("filter[environment_scope]") or ["*"])[0]
                    return self._variables(method, parts[0], parts[1], parts[3] if len(parts) > 3 else None, scope)
            return self._reply(404, {"message": "404 Not Found"})

        def _create_runner(self, body: dict[str, Any]) -> None:
            if body.get("runner_type") not in ("instance_type", "group_type", "project_type"):
                return self._reply(400, {"message": "runner_type does not have a valid value"})
            needed = {"group_type": "group_id", "project_type": "project_id"}.get(body["runner_type"])
            if needed and not body.get(needed):
                return self._reply(400, {"message": f"{needed} is missing"})
            runner_id = state.data["next_id"]
            state.data["next_id"] += 1
            runner = {k: body.get(k) for k in RUNNER_FIELDS} | {"id": runner_id, "active": True}
            state.data["runners"][str(runner_id)] = runner
            state.save()
            self._reply(201, {"id": runner_id, "token": "glrt-" + secrets.token_urlsafe(20), "token_expires_at": None})

        def _runner(self, method: str, runner_id: str) -> None:
            runner = state.data["runners"].get(runner_id)
            if runner is None:
                return self._reply(404, {"message": "404 Not found"})
            if method == "GET":
                return self._reply(200, runner)
            if method == "PUT":
                runner.update({k: v for k, v in self._body().items() if k in RUNNER_FIELDS})
                state.save()
                return self._reply(200, runner)
            if method == "DELETE":
                del state.data["runners"][runner_id]
                state.save()
                return self._reply(204)
            return self._reply(405, {"message": "405 Method Not Allowed"})

        def _variables(self, method: str, kind: str, owner: str, key: str | None, scope: str) -> None:
            table = state.data["variables"].setdefault(f"{kind}/{owner}", {})
            if method == "POST" and key is None:
                # GitLab's defaults for what the request leaves out.
                body = {
                    "variable_type": "env_var",
                    "protected": False,
                    "masked": False,
                    "raw": False,
                    "environment_scope": "*",
                    **self._body(),
                }
                error = _variable_error(body)
                if error:
                    return self._reply(400, {"message": {"value" if "value" in error else "key": [error]}})
                ident = f"{body['key']}|{body['environment_scope']}"
                if ident in table:
                    return self._reply(400, {"message": {"key": [f"({body['key']}) has already been taken"]}})
                table[ident] = {k: body.get(k) for k in VARIABLE_FIELDS}
                state.save()
                return self._reply(201, table[ident])
            ident = f"{key}|{scope}"
            if ident not in table:
                return self._reply(404, {"message": "404 Variable Not Found"})
            if method == "GET":
                return self._reply(200, table[ident])
            if method == "PUT":
                body = table[ident] | {
                    k: v for k, v in self._body().items() if k in VARIABLE_FIELDS and k not in ("key", "environment_scope")
                }
                error = _variable_error(body)
                if error:
                    return self._reply(400, {"message": {"value": [error]}})
                table[ident] = body
                state.save()
                return self._reply(200, body)
            if method == "DELETE":
                del table[ident]
                state.save()
                return self._reply(204)
            return self._reply(405, {"message": "405 Method Not Allowed"})

        def do_GET(self) -> None:
            self._route("GET")

        def do_POST(self) -> None:
            self._route("POST")

        def do_PUT(self) -> None:
            self._route("PUT")

        def do_DELETE(self) -> None:
            self._route("DELETE")

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--token", required=True, help="the only token the API accepts")
    parser.add_argument("--state", required=True, type=Path, help="JSON file holding the runners and variables")
    args = parser.parse_args(argv)
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(GitlabState(args.state), args.token))
    print(f"http://127.0.0.1:{server.server_address[1]}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
