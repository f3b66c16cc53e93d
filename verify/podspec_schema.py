"""Write policies/podspec_schema.json: the field names of a Kubernetes PodSpec, from the API's own schema.

The pack accepts a runner `pod_spec` patch only if every key is the exact field name of the API at its
place: the runner decodes the patched pod with Go's encoding/json, which matches keys to fields case-
insensitively (and with Unicode folding), so `hostpid` or `securityContext` spelled with U+017F (long s) would reach the pod while a
reader of exact names saw nothing. The names (and the strategic-merge keys of lists) come from the
OpenAPI schema of the pinned Kubernetes version as packaged by kubernetes-validate (a pinned
requirement), never from a hand list; tests/test_contracts.py fails when the committed file differs.

    python -m verify.podspec_schema        # rewrite policies/podspec_schema.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "policies" / "podspec_schema.json"
# The Kubernetes minor of the tools the e2e tier runs (e2e/tools.toml: kubernetes v1.34.4).
KUBERNETES_VERSION = "v1.34.0"
ROOT_TYPE = "io.k8s.api.core.v1.PodSpec"


def _definitions() -> dict[str, Any]:
    import kubernetes_validate

    folder = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / f"{KUBERNETES_VERSION}-local-strict"
    return json.loads((folder / "_definitions.json").read_text())["$defs"]


def _short(ref: str) -> str:
    return ref.rsplit("/", 1)[-1].rsplit(".", 1)[-1]


def _scalar(schema: dict[str, Any]) -> str:
    types = schema.get("type")
    names = [t for t in (types if isinstance(types, list) else [types]) if t and t != "null"]
    return names[0] if len(names) == 1 else "any"


def _descriptor(schema: dict[str, Any], definitions: dict[str, Any], todo: list[str]) -> dict[str, Any]:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        target = definitions[name]
        if "properties" not in target:  # Quantity, IntOrString, Time, FieldsV1: values, not objects
            return {"scalar": "quantity" if name.endswith(".Quantity") else "any"}
        todo.append(name)
        return {"object": _short(name)}
    if "items" in schema:
        found: dict[str, Any] = {"list": _descriptor(schema["items"], definitions, todo)}
        if "x-kubernetes-patch-merge-key" in schema:
            found["mergeKey"] = schema["x-kubernetes-patch-merge-key"]
        if "x-kubernetes-patch-strategy" in schema:
            found["strategy"] = schema["x-kubernetes-patch-strategy"]
        return found
    if isinstance(schema.get("additionalProperties"), dict):
        return {"map": _descriptor(schema["additionalProperties"], definitions, todo)}
    return {"scalar": _scalar(schema)}


def build() -> dict[str, Any]:
    definitions = _definitions()
    types: dict[str, Any] = {}
    origin: dict[str, str] = {}  # short name -> the definition it stands for
    todo = [ROOT_TYPE]
    while todo:
        name = todo.pop()
        short = _short(name)
        if short in origin:
            if origin[short] != name:  # the pack looks types up by short name: they must not collide
                raise SystemExit(f"two definitions named {short}: {origin[short]} and {name}")
            continue
        origin[short] = name
        types[short] = {field: _descriptor(schema, definitions, todo) for field, schema in sorted(definitions[name]["properties"].items())}
    return {
        "source": f"kubernetes-validate {KUBERNETES_VERSION}-local-strict/_definitions.json (the Kubernetes OpenAPI schema)",
        "root": _short(ROOT_TYPE),
        "types": dict(sorted(types.items())),
    }


def render(schema: dict[str, Any] | None = None) -> str:
    return json.dumps(schema if schema is not None else build(), indent=1, sort_keys=True) + "\n"


def main() -> int:
    schema = build()
    OUT.write_text(render(schema))
    print(f"wrote {OUT.relative_to(ROOT)} ({len(schema['types'])} types)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
