"""Property values on the provider wire: secrets, unknowns, Struct conversion (stand-in plugins)."""

from __future__ import annotations

import json
from typing import Any

from google.protobuf import json_format, struct_pb2

# Ref: https://github.com/pulumi/pulumi/blob/v3.274.0/sdk/go/common/resource/plugin/rpc.go (sentinels)
SECRET_SIG = "4dabf18193072939515e22adb298388d"
SECRET_VALUE = "1b47061264138c4ac30d75fd1eb44270"
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SECRET_SIG) == SECRET_VALUE


def reveal(value: Any) -> Any:
    """The plain value under any secret wrappers (secrets travel wrapped when acceptSecrets is on)."""
    if is_secret(value):
        return reveal(value.get("value"))
    if isinstance(value, dict):
        return {k: reveal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [reveal(v) for v in value]
    return value


def secret(value: Any) -> dict[str, Any]:
    return {SECRET_SIG: SECRET_VALUE, "value": value}


def has_unknowns(value: Any) -> bool:
    if value == UNKNOWN:
        return True
    if isinstance(value, dict):
        return any(has_unknowns(v) for v in value.values())
    if isinstance(value, list):
        return any(has_unknowns(v) for v in value)
    return False


def to_struct(value: dict[str, Any]) -> struct_pb2.Struct:
    result = struct_pb2.Struct()
    result.update(json.loads(json.dumps(value)))
    return result


def from_struct(value: struct_pb2.Struct) -> dict[str, Any]:
    return dict(json_format.MessageToDict(value))
