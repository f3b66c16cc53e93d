"""Reading the engine's config, validating it, and turning validation errors into messages for people.

Every error names the key (with the project namespace), the value and what is allowed, and is raised
before any resource is registered.
"""

from __future__ import annotations

import contextlib
import json
import re
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from pulumi.errors import RunError
from pydantic import ValidationError

from ..marks import PROJECT
from .base import RuleViolation
from .stack import Environment, StackConfig

# Keys that must arrive as Pulumi secrets; they are read by the providers, never by the model.
SECRET_KEYS = frozenset({"gitlabToken"})


REDACTED = "[secret]"
# Values that look like credentials are never echoed, even under a key that is not a secret: a token
# pasted into the wrong key must not end up in a CI log. GitLab tokens (glpat-, glrt-, gldt-, ...),
# AWS access key ids, and 40-character AWS secret access keys.
# Ref: https://docs.gitlab.com/security/tokens/#token-prefixes
_SECRET_LIKE = re.compile(r"gl[a-z]{1,5}-[A-Za-z0-9_-]{8,}|(?:AKIA|ASIA)[A-Z0-9]{16}|(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")


class ConfigError(RunError):
    """Invalid stack configuration. The message is meant for the person running `pulumi up`.

    A `pulumi.RunError`: the language host prints its message alone, with no traceback and no program
    source (an unhandled exception of any other type gets both).
    Ref: https://github.com/pulumi/pulumi/blob/v3.272.0/sdk/python/lib/pulumi/errors.py
    """

    def __init__(self, message: str, problems: Iterable[str] | None = None) -> None:
        super().__init__(message)
        self.problems: list[str] = list(problems) if problems is not None else [message]
        """One line per problem (what `make synth` counts)."""


def invalid(problems: Iterable[str]) -> ConfigError:
    """The error for one or more problem lines, each '  <project>:<key> ...: <what is allowed>'."""
    lines = list(problems)
    return ConfigError("invalid stack configuration:\n" + "\n".join(lines), [line.strip() for line in lines])


# Pydantic's words for a value of the wrong JSON type, in the terms of a Pulumi.<stack>.yaml. Config is
# validated strictly: YAML `true` is not 1 and `"4"` is not 4 (a quoted number is a typo worth naming).
_TYPE_MESSAGES = {
    "int_type": 'must be a whole number, unquoted (e.g. 4; not "4", 4.0 or true)',
    "int_from_float": 'must be a whole number, unquoted (e.g. 4; not "4", 4.0 or true)',
    "bool_type": "must be true or false, unquoted",
    "string_type": "must be a string",
    "list_type": "must be a list",
    "dict_type": "must be a mapping of keys to values",
    "model_type": "must be a mapping of keys to values",
}


def redact(text: str) -> str:
    return _SECRET_LIKE.sub(REDACTED, text)


def _describe(error: Mapping[str, Any], secret_keys: frozenset[str] = frozenset()) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "(root)"
    msg = str(error["msg"]).removeprefix("Value error, ")
    rule = (error.get("ctx") or {}).get("error")
    if isinstance(rule, RuleViolation):
        key = f"{key}.{rule.key}" if error["loc"] else rule.key
        error = {**error, "input": rule.value}
    if error["type"] == "extra_forbidden":
        return f"  {PROJECT}:{key}: unknown key (a typo?); remove it or see Pulumi.yaml for the allowed keys"
    if error["type"] == "missing":
        return f"  {PROJECT}:{key}: required but not set"
    msg = _TYPE_MESSAGES.get(error["type"], msg)
    value = json.dumps(error.get("input"), default=str)
    if isinstance(error.get("input"), dict) and (len(value) > 120 or not error["loc"]):
        # A rule over a large section (or the whole config): the message names the keys involved; a
        # truncated dump of the section would only bury it.
        return redact(f"  {PROJECT}:{key}: {msg}" if error["loc"] else f"  {PROJECT}: {msg}")
    if len(value) > 120:
        value = value[:117] + "..."
    if error["loc"] and str(error["loc"][0]) in secret_keys:
        value = REDACTED  # set with `pulumi config set --secret`: never printed
    return redact(f"  {PROJECT}:{key} = {value}: {msg}")


def parse_config(raw: Mapping[str, Any], stack: str | None = None, secret_keys: Iterable[str] = ()) -> StackConfig:
    """Validate a plain mapping of project config keys (without the namespace prefix).

    A stack named like an environment must declare that environment: a `prod` stack whose config says
    `environment: dev` would silently skip the prod rules (pinning, protection, immutability).
    `secret_keys` are the keys (without prefix) that arrived as Pulumi secrets: their values are never
    printed in an error.
    """
    data = {k: v for k, v in raw.items() if k not in SECRET_KEYS}
    secrets = frozenset(secret_keys)
    declared = data.get("environment")
    if stack in typing.get_args(Environment) and declared != stack:
        # Checked first: the other environment's rules would otherwise report their own findings and
        # hide the one that matters.
        raise invalid(
            [
                f"  {PROJECT}:environment = {redact(json.dumps(declared, default=str))}: stack {stack!r} must declare "
                f"environment {stack!r} (a stack named after an environment gets that environment's rules)"
            ]
        )
    try:
        # Strict, and from JSON as the engine delivers config: no bool-to-int or string-to-number coercion.
        cfg = StackConfig.model_validate_json(json.dumps(data, default=str), strict=True)
    except ValidationError as exc:
        raise invalid(_describe(e, secrets) for e in exc.errors(include_url=False)) from None
    return cfg


def project_config(entries: Iterable[tuple[str, Any]], secret_keys: Iterable[str] = ()) -> dict[str, Any]:
    """Pick this project's keys from the engine's flat config ('<ns>:<key>' -> JSON string or value).

    Secret-only keys must arrive as Pulumi secrets; plain values for them are refused so a token
    never sits readable in Pulumi.<stack>.yaml.
    """
    prefix = f"{PROJECT}:"
    secrets = set(secret_keys)
    result: dict[str, Any] = {}
    for full_key, value in entries:
        if not full_key.startswith(prefix):
            continue
        key = full_key[len(prefix) :]
        if key in SECRET_KEYS:
            if full_key not in secrets:
                raise invalid([f"  {full_key}: must be set with `pulumi config set --secret {key} ...`, not as plain text"])
            continue
        if isinstance(value, str):
            with contextlib.suppress(json.JSONDecodeError):  # plain strings stay strings
                value = json.loads(value)
        result[key] = value
    return result


def load_config() -> StackConfig:
    """Read and validate the running stack's config; raises ConfigError before any resource exists.

    The whole project namespace is validated at once, so `pulumi.Config` (one key at a time) does not
    fit. The SDK has no public accessor for all keys, so this reads its runtime module:
    `get_config_env()` and `get_config_secret_keys_env()` are what the language host passes, and
    `CONFIG`/`_SECRET_KEYS` (PRIVATE SDK names, pulumi 3.272.0 `pulumi/runtime/config.py`) hold what
    `set_all_config` stored (mocks and the automation API). Re-check them on every SDK upgrade;
    tests/test_config.py runs this function against the pinned SDK.
    """
    import pulumi
    from pulumi.runtime import config as runtime_config

    entries = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    secret_keys = set(runtime_config.get_config_secret_keys_env()) | set(runtime_config._SECRET_KEYS.get())
    prefix = f"{PROJECT}:"
    secret_names = {k.removeprefix(prefix) for k in secret_keys if k.startswith(prefix)}
    return parse_config(project_config(entries.items(), secret_keys), stack=pulumi.get_stack(), secret_keys=secret_names)
