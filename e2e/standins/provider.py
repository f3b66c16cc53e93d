"""The provider gRPC protocol for the **stand-in** plugins (`aws`, `gitlab`): what the engine calls.

The real AWS and GitLab providers cannot be built here (their upstreams are bridged Terraform
providers patched outside their Go modules), so the engine talks to plugins of ours that speak the
same protocol and implement exactly the resources and invokes the stack uses. What stays real is
everything on the engine's side of the wire: Check before Diff, Diff deciding update or replace,
`protect`, secrets in state, previews with unknowns, refresh through Read, deletes in reverse
dependency order. Each plugin rejects in `Check` any property name or type that the real provider's
schema rejects (`e2e/standins/schema.py`).

Ref: https://github.com/pulumi/pulumi/blob/v3.274.0/proto/pulumi/provider.proto
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import empty_pb2
from pulumi.runtime.proto import plugin_pb2, provider_pb2, provider_pb2_grpc

from .provider_values import UNKNOWN, from_struct, is_secret, reveal, secret, to_struct
from .schema import Schema


class ProviderError(Exception):
    """An error the real provider would return from the API (the engine shows the message)."""


@dataclass
class ResourceType:
    """One resource token: its lifecycle against the stand-in's backend."""

    token: str
    create: Callable[[dict[str, Any]], tuple[str, dict[str, Any]]]
    read: Callable[[str, dict[str, Any]], dict[str, Any] | None]
    delete: Callable[[str, dict[str, Any]], None]
    update: Callable[[str, dict[str, Any], dict[str, Any]], dict[str, Any]] | None = None
    # Input properties whose change replaces the resource (the real provider's ForceNew).
    replace_on: frozenset[str] = frozenset()
    # Output properties the real provider marks secret.
    secret_outputs: frozenset[str] = frozenset()
    # Outputs unknown during a preview of a create.
    computed: tuple[str, ...] = ("id",)
    defaults: dict[str, Any] = field(default_factory=dict)


class StandinProvider(provider_pb2_grpc.ResourceProviderServicer):
    def __init__(
        self, name: str, version: str, schema: Schema, resources: list[ResourceType], invokes: dict[str, Callable[..., dict[str, Any]]]
    ) -> None:
        self.name = name
        self.version = version
        self.schema = schema
        self.resources = {r.token: r for r in resources}
        self.invokes = invokes
        self.config: dict[str, Any] = {}

    # --- plugin and provider configuration ----------------------------------------------------------
    def GetPluginInfo(self, request: Any, context: Any) -> Any:
        return plugin_pb2.PluginInfo(version=self.version)

    def GetSchema(self, request: Any, context: Any) -> Any:
        return provider_pb2.GetSchemaResponse(schema=json.dumps({"name": self.name, "version": self.version}))

    def CheckConfig(self, request: Any, context: Any) -> Any:
        news = from_struct(request.news)
        failures = [provider_pb2.CheckFailure(property=p, reason=r) for p, r in self.schema.check_config(news)]
        return provider_pb2.CheckResponse(inputs=request.news, failures=failures)

    def DiffConfig(self, request: Any, context: Any) -> Any:
        olds, news = reveal(from_struct(request.olds)), reveal(from_struct(request.news))
        changed = sorted(k for k in set(olds) | set(news) if olds.get(k) != news.get(k) and not k.startswith("__"))
        return provider_pb2.DiffResponse(
            changes=provider_pb2.DiffResponse.DIFF_SOME if changed else provider_pb2.DiffResponse.DIFF_NONE, diffs=changed
        )

    def Configure(self, request: Any, context: Any) -> Any:
        self.config = reveal(from_struct(request.args)) if request.HasField("args") else dict(request.variables)
        return provider_pb2.ConfigureResponse(acceptSecrets=True, supportsPreview=True, acceptResources=True)

    def Cancel(self, request: Any, context: Any) -> Any:
        return empty_pb2.Empty()

    # --- invokes -------------------------------------------------------------------------------------
    def Invoke(self, request: Any, context: Any) -> Any:
        handler = self.invokes.get(request.tok)
        if handler is None:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, f"stand-in {self.name}: invoke {request.tok} is not one the stack uses")
            raise AssertionError("unreachable: abort raises")
        args = reveal(from_struct(request.args))
        problems = self.schema.check_invoke(request.tok, args)
        if problems:
            return provider_pb2.InvokeResponse(failures=[provider_pb2.CheckFailure(property=p, reason=r) for p, r in problems])
        try:
            return provider_pb2.InvokeResponse(**{"return": to_struct(handler(self.config, **args))})
        except ProviderError as exc:
            context.abort(grpc.StatusCode.UNKNOWN, str(exc))

    # --- resources -----------------------------------------------------------------------------------
    def _type(self, urn: str, context: Any) -> ResourceType:
        token = urn.split("::")[-2].split("$")[-1]
        if token not in self.resources:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, f"stand-in {self.name}: resource type {token} is not one the stack uses")
        return self.resources[token]

    def Check(self, request: Any, context: Any) -> Any:
        rtype = self._type(request.urn, context)
        news = from_struct(request.news)
        failures = [provider_pb2.CheckFailure(property=p, reason=r) for p, r in self.schema.check_resource(rtype.token, news)]
        inputs = {**rtype.defaults, **news}
        return provider_pb2.CheckResponse(inputs=to_struct(inputs), failures=failures)

    def Diff(self, request: Any, context: Any) -> Any:
        rtype = self._type(request.urn, context)
        olds = from_struct(request.old_inputs) if request.HasField("old_inputs") else from_struct(request.olds)
        news = from_struct(request.news)
        ignored = set(request.ignoreChanges)
        changed = sorted(
            k for k in set(olds) | set(news) if k not in ignored and k != "__defaults" and reveal(olds.get(k)) != reveal(news.get(k))
        )
        replaces = [k for k in changed if k in rtype.replace_on or rtype.update is None]
        detailed = {
            k: provider_pb2.PropertyDiff(
                kind=(
                    provider_pb2.PropertyDiff.ADD_REPLACE
                    if k not in olds
                    else provider_pb2.PropertyDiff.DELETE_REPLACE
                    if k not in news
                    else provider_pb2.PropertyDiff.UPDATE_REPLACE
                )
                if k in replaces
                else (
                    provider_pb2.PropertyDiff.ADD
                    if k not in olds
                    else provider_pb2.PropertyDiff.DELETE
                    if k not in news
                    else provider_pb2.PropertyDiff.UPDATE
                ),
                inputDiff=True,
            )
            for k in changed
        }
        return provider_pb2.DiffResponse(
            changes=provider_pb2.DiffResponse.DIFF_SOME if changed else provider_pb2.DiffResponse.DIFF_NONE,
            diffs=changed,
            replaces=replaces,
            detailedDiff=detailed,
            hasDetailedDiff=True,
        )

    def _outputs(self, rtype: ResourceType, inputs: dict[str, Any], computed: dict[str, Any]) -> dict[str, Any]:
        """Inputs echoed (secret where they came in secret) plus what the backend computed."""
        outputs = dict(inputs)
        for key, value in computed.items():
            outputs[key] = secret(value) if key in rtype.secret_outputs and not is_secret(value) else value
        return outputs

    def Create(self, request: Any, context: Any) -> Any:
        rtype = self._type(request.urn, context)
        inputs = from_struct(request.properties)
        if request.preview:
            return provider_pb2.CreateResponse(
                id="", properties=to_struct(self._outputs(rtype, inputs, dict.fromkeys(rtype.computed, UNKNOWN)))
            )
        try:
            ident, computed = rtype.create(reveal(inputs) | {"__config": self.config})
        except ProviderError as exc:
            context.abort(grpc.StatusCode.UNKNOWN, f"creating {request.urn.split('::')[-1]}: {exc}")
        return provider_pb2.CreateResponse(id=ident, properties=to_struct(self._outputs(rtype, inputs, computed)))

    def Read(self, request: Any, context: Any) -> Any:
        rtype = self._type(request.urn, context)
        props = from_struct(request.properties)
        inputs = from_struct(request.inputs) if request.HasField("inputs") else {}
        try:
            current = rtype.read(request.id, reveal(props) | {"__config": self.config})
        except ProviderError as exc:
            context.abort(grpc.StatusCode.UNKNOWN, f"reading {request.id}: {exc}")
        if current is None:  # gone: the engine drops it from state on refresh
            return provider_pb2.ReadResponse(id="")
        merged = {**props, **{k: v for k, v in current.items()}}
        # Keep the secret wrappers of what was secret before.
        merged = {
            k: secret(reveal(v)) if (is_secret(props.get(k)) or k in rtype.secret_outputs) and not is_secret(v) else v
            for k, v in merged.items()
        }
        return provider_pb2.ReadResponse(id=request.id, properties=to_struct(merged), inputs=to_struct(inputs) if inputs else None)

    def Update(self, request: Any, context: Any) -> Any:
        rtype = self._type(request.urn, context)
        olds, news = from_struct(request.olds), from_struct(request.news)
        if rtype.update is None:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"{rtype.token} cannot be updated in place")
            raise AssertionError("unreachable: abort raises")
        if request.preview:
            return provider_pb2.UpdateResponse(properties=to_struct({**olds, **news}))
        try:
            computed = rtype.update(request.id, reveal(olds), reveal(news) | {"__config": self.config})
        except ProviderError as exc:
            context.abort(grpc.StatusCode.UNKNOWN, f"updating {request.id}: {exc}")
        kept = {k: v for k, v in olds.items() if k not in news and k not in computed and k in rtype.computed}
        return provider_pb2.UpdateResponse(properties=to_struct(self._outputs(rtype, news, {**kept, **computed})))

    def Delete(self, request: Any, context: Any) -> Any:
        rtype = self._type(request.urn, context)
        try:
            rtype.delete(request.id, reveal(from_struct(request.properties)) | {"__config": self.config})
        except ProviderError as exc:
            context.abort(grpc.StatusCode.UNKNOWN, f"deleting {request.id}: {exc}")
        return empty_pb2.Empty()


def serve(provider: StandinProvider) -> None:
    """Serve on 127.0.0.1 and print the port as the first line of stdout, as the engine expects."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=[("grpc.max_receive_message_length", 64 << 20)])

    provider_pb2_grpc.add_ResourceProviderServicer_to_server(_logging(provider), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    log = os.environ.get("GBR_STANDIN_LOG")
    if log:
        sys.stderr = open(log, "a")  # noqa: SIM115 - the plugin's lifetime
    try:
        server.wait_for_termination()
    except KeyboardInterrupt:  # the engine ends its plugins with SIGINT
        server.stop(grace=None)


def _logging(provider: StandinProvider) -> StandinProvider:
    """Unexpected exceptions become gRPC errors with the traceback in the stand-in's log, never a hang."""
    for name in ("Check", "Diff", "Create", "Read", "Update", "Delete", "Invoke", "Configure", "CheckConfig", "DiffConfig"):
        method = getattr(provider, name)

        def wrapped(request: Any, context: Any, _method: Callable[..., Any] = method, _name: str = name) -> Any:
            try:
                return _method(request, context)
            except Exception as exc:
                if context.code() is not None:  # context.abort already set the status and raised
                    raise
                traceback.print_exc(file=sys.stderr)
                context.abort(grpc.StatusCode.INTERNAL, f"stand-in {provider.name} {_name}: {type(exc).__name__}: {exc}")

        setattr(provider, name, wrapped)
    return provider
