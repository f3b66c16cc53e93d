"""**Stand-in** `gitlab` provider plugin (pulumi-gitlab 10.4.0's tokens) over the GitLab API stand-in.

Implements `gitlab.UserRunner`, `gitlab.ProjectVariable` and `gitlab.GroupVariable` by calling the
REST endpoints the real provider calls, on the API stand-in of `e2e/standins/gitlab_api.py`
(`GBR_GITLAB_API`: the provider's `baseUrl` names gitlab.com, which is not reachable here), with the
provider's configured token, so a token that never reached the provider fails as it would. Outputs
as the real provider's: the runner's `token` is a secret output that only the create answers; a
variable's id is `<project>:<key>:<environment scope>`.

Ref: https://www.pulumi.com/registry/packages/gitlab/api-docs/userrunner/ ;
https://www.pulumi.com/registry/packages/gitlab/api-docs/projectvariable/
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from .provider import ProviderError, ResourceType, StandinProvider, serve
from .schema import Schema

VERSION = "10.4.0"


def _api(config: dict[str, Any], method: str, path: str, body: dict[str, Any] | None = None, query: dict[str, str] | None = None) -> Any:
    base = os.environ.get("GBR_GITLAB_API")
    if not base:
        raise ProviderError("stand-in gitlab: GBR_GITLAB_API (the GitLab API stand-in's URL) is not set")
    token = config.get("token") or os.environ.get("GITLAB_TOKEN") or ""
    url = f"{base}/api/v4/{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
    request = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None, method=method)
    request.add_header("PRIVATE-TOKEN", token)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read().decode()
    except urllib.error.HTTPError as exc:
        message = exc.read().decode()
        raise ProviderError(f"{method} {url.split('?')[0].removeprefix(base)}: {exc.code} {message}") from None
    return json.loads(text) if text else None


def _not_found(exc: ProviderError) -> bool:
    return ": 404 " in str(exc)


RUNNER_INPUTS = {"runnerType": "runner_type", "groupId": "group_id", "projectId": "project_id", "description": "description",
                 "tagLists": "tag_list", "untagged": "run_untagged", "accessLevel": "access_level", "locked": "locked",
                 "maximumTimeout": "maximum_timeout", "paused": "paused"}  # fmt: skip


def runner_create(p: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    body = {api: p[name] for name, api in RUNNER_INPUTS.items() if p.get(name) is not None}
    created = _api(p["__config"], "POST", "user/runners", body)
    return str(created["id"]), {"token": created["token"], "tokenExpiresAt": created.get("token_expires_at") or ""}


def runner_read(ident: str, p: dict[str, Any]) -> dict[str, Any] | None:
    try:
        found = _api(p["__config"], "GET", f"runners/{ident}")
    except ProviderError as exc:
        if _not_found(exc):
            return None
        raise
    return {name: found[api] for name, api in RUNNER_INPUTS.items() if found.get(api) is not None and name in p}


def runner_update(ident: str, olds: dict[str, Any], news: dict[str, Any]) -> dict[str, Any]:
    body = {
        api: news[name]
        for name, api in RUNNER_INPUTS.items()
        if name not in ("runnerType", "groupId", "projectId") and news.get(name) is not None
    }
    _api(news["__config"], "PUT", f"runners/{ident}", body)
    return {"token": olds.get("token"), "tokenExpiresAt": olds.get("tokenExpiresAt", "")}


def runner_delete(ident: str, p: dict[str, Any]) -> None:
    _api(p["__config"], "DELETE", f"runners/{ident}")


VARIABLE_INPUTS = {"key": "key", "value": "value", "variableType": "variable_type", "protected": "protected", "masked": "masked",
                   "environmentScope": "environment_scope", "raw": "raw", "description": "description"}  # fmt: skip


def _variables(owner_field: str, collection: str) -> ResourceType:
    token = {"project": "gitlab:index/projectVariable:ProjectVariable", "group": "gitlab:index/groupVariable:GroupVariable"}[owner_field]

    def owner(p: dict[str, Any]) -> str:
        return urllib.parse.quote(str(p[owner_field]), safe="")

    def scope(p: dict[str, Any]) -> str:
        return str(p.get("environmentScope") or "*")

    def create(p: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        body = {api: p[name] for name, api in VARIABLE_INPUTS.items() if p.get(name) is not None}
        _api(p["__config"], "POST", f"{collection}/{owner(p)}/variables", body)
        return f"{p[owner_field]}:{p['key']}:{scope(p)}", {"environmentScope": scope(p)}

    def read(ident: str, p: dict[str, Any]) -> dict[str, Any] | None:
        try:
            found = _api(
                p["__config"], "GET", f"{collection}/{owner(p)}/variables/{p['key']}", query={"filter[environment_scope]": scope(p)}
            )
        except ProviderError as exc:
            if _not_found(exc):
                return None
            raise
        return {name: found[api] for name, api in VARIABLE_INPUTS.items() if found.get(api) is not None}

    def update(ident: str, olds: dict[str, Any], news: dict[str, Any]) -> dict[str, Any]:
        body = {
            api: news[name]
            for name, api in VARIABLE_INPUTS.items()
            if name not in ("key", "environmentScope") and news.get(name) is not None
        }
        _api(
            news["__config"],
            "PUT",
            f"{collection}/{owner(news)}/variables/{news['key']}",
            body,
            query={"filter[environment_scope]": scope(news)},
        )
        return {"environmentScope": scope(news)}

    def delete(ident: str, p: dict[str, Any]) -> None:
        _api(p["__config"], "DELETE", f"{collection}/{owner(p)}/variables/{p['key']}", query={"filter[environment_scope]": scope(p)})

    return ResourceType(
        token, create, read, delete, update, replace_on=frozenset({owner_field, "key", "environmentScope"}), computed=("id",)
    )


def provider() -> StandinProvider:
    resources = [
        ResourceType("gitlab:index/userRunner:UserRunner", runner_create, runner_read, runner_delete, runner_update,
                     replace_on=frozenset({"runnerType", "groupId", "projectId"}), secret_outputs=frozenset({"token"}),
                     computed=("id", "token", "tokenExpiresAt")),
        _variables("project", "projects"),
        _variables("group", "groups"),
    ]  # fmt: skip
    return StandinProvider("gitlab", VERSION, Schema("gitlab"), resources, {})


if __name__ == "__main__":
    serve(provider())
    sys.exit(0)
