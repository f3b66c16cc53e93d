"""What the real provider's `Check` accepts, read from the pinned Python SDK's generated input types.

The real providers' `schema.json` is not obtainable here (pulumi-aws and pulumi-gitlab are not on the
Go module proxy). Their Python SDKs are generated from that same schema: every resource's `<Name>Args`
input type names each property with its schema name (`@pulumi.getter(name="imageTagMutability")`)
and its schema type, nested object types included, and every invoke's function takes the schema's
arguments. The stand-ins reject any property name or type those generated types do not have, so a
typo or a wrong type fails at `pulumi preview` as it would against the real provider.

Ref: https://github.com/pulumi/pulumi/blob/v3.272.0/sdk/python/lib/pulumi/_types.py (input types)
"""

from __future__ import annotations

import collections.abc
import contextlib
import enum
import importlib
import inspect
import json
import re
import typing
from typing import Any

from pulumi._types import input_type_types, is_input_type, unwrap_type

from .provider_values import UNKNOWN, is_secret, reveal

Failure = tuple[str, str]


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _describe(typ: Any) -> str:
    return getattr(typ, "__name__", str(typ))


def check_value(path: str, value: Any, typ: Any) -> list[Failure]:
    """Failures of `value` against a generated SDK type (unknowns and secrets are looked through)."""
    if is_secret(value):
        value = reveal(value)
    if value is None or value == UNKNOWN:
        return []
    typ = unwrap_type(typ)
    origin = typing.get_origin(typ)
    if typ is Any or typ is object:
        return []
    if origin is typing.Union:
        options = [a for a in typing.get_args(typ) if a is not type(None)]
        results = [check_value(path, value, option) for option in options]
        return [] if any(not r for r in results) else results[0]
    if isinstance(typ, type) and issubclass(typ, enum.Enum):
        allowed = [m.value for m in typ]
        return [] if value in allowed else [(path, f"expected one of {allowed}, got {value!r}")]
    if typ is bool:
        return [] if isinstance(value, bool) else [(path, f"expected a boolean, got {value!r}")]
    if typ is int:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer()
        return [] if ok else [(path, f"expected an integer, got {value!r}")]
    if typ is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return [] if ok else [(path, f"expected a number, got {value!r}")]
    if typ is str:
        return [] if isinstance(value, str) else [(path, f"expected a string, got {value!r}")]
    if origin in (list, collections.abc.Sequence):
        if not isinstance(value, list):
            return [(path, f"expected a list, got {value!r}")]
        (item,) = typing.get_args(typ) or (Any,)
        return [f for i, v in enumerate(value) for f in check_value(f"{path}[{i}]", v, item)]
    if origin in (dict, collections.abc.Mapping):
        if not isinstance(value, dict):
            return [(path, f"expected a map, got {value!r}")]
        item = (typing.get_args(typ) or (str, Any))[1]
        return [f for k, v in value.items() for f in check_value(f"{path}.{k}", v, item)]
    if isinstance(typ, type) and is_input_type(typ):
        return check_object(path, value, typ)
    return [(path, f"stand-in cannot check type {_describe(typ)}: extend e2e/standins/schema.py")]


def check_object(path: str, value: Any, input_type: type) -> list[Failure]:
    if not isinstance(value, dict):
        return [(path, f"expected an object, got {value!r}")]
    fields = input_type_types(input_type)
    failures: list[Failure] = []
    for key, item in value.items():
        where = f"{path}.{key}" if path else key
        if key.startswith("__"):
            continue
        if key not in fields:
            failures.append((where, f"unknown property {key!r}: {input_type.__name__} has {sorted(fields)}"))
        else:
            failures.extend(check_value(where, item, fields[key]))
    return failures


class Schema:
    """The resources, invokes and provider config of one package, from its Python SDK."""

    def __init__(self, package: str) -> None:
        self.package = package
        self.sdk = importlib.import_module(f"pulumi_{package}")

    def _module(self, token: str) -> Any:
        module = token.split(":")[1].split("/")[0]
        return self.sdk if module == "index" else importlib.import_module(f"pulumi_{self.package}.{module.replace('/', '.')}")

    def input_type(self, token: str) -> type:
        return getattr(self._module(token), token.split(":")[2] + "Args")

    def check_resource(self, token: str, news: dict[str, Any]) -> list[Failure]:
        return check_object("", news, self.input_type(token))

    def check_config(self, news: dict[str, Any]) -> list[Failure]:
        # Provider inputs travel JSON-encoded where they are not strings (the engine's config form).
        fields = input_type_types(self.sdk.ProviderArgs)
        decoded = {}
        for key, value in news.items():
            if isinstance(value, str) and key in fields and unwrap_type(fields[key]) is not str:
                with contextlib.suppress(json.JSONDecodeError):
                    value = json.loads(value)
            decoded[key] = value
        return check_object("", {k: v for k, v in decoded.items() if k != "version"}, self.sdk.ProviderArgs)

    def check_invoke(self, token: str, args: dict[str, Any]) -> list[Failure]:
        function = getattr(self._module(token), _snake(token.split(":")[2]))
        parameters = {n: p for n, p in inspect.signature(function).parameters.items() if n != "opts"}
        # The generated function sends `__args__['<schema name>'] = <python name>`.
        names = dict(re.findall(r"__args__\['(\w+)'\] = (\w+)", inspect.getsource(function)))
        hints = typing.get_type_hints(function)
        failures: list[Failure] = []
        for key, value in args.items():
            if key not in names:
                failures.append((key, f"unknown argument {key!r} of {token}: it takes {sorted(names)}"))
            elif names[key] in parameters:
                failures.extend(check_value(key, value, hints.get(names[key], Any)))
        return failures
