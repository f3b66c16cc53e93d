"""Drive the policy pack over its real gRPC protocol, spawned exactly as the Pulumi CLI spawns it.

`python -u -m pulumi.policy <engine address> .` with the pack folder as working directory; the pack
prints its port on the first stdout line. The PolicyPack constructor serves forever, so the pack is
never imported in-process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import grpc
from google.protobuf import empty_pb2, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc

from .harness import PROJECT, ROOT

POLICIES = ROOT / "policies"
LEVELS = {0: "advisory", 1: "mandatory", 2: "disabled", 3: "remediate"}
LEVEL_VALUES: dict[str, Any] = {name: value for value, name in LEVELS.items()}
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"  # Pulumi's wire sentinel for an unknown value


@dataclass(frozen=True)
class Diagnostic:
    policy: str
    level: str
    message: str
    urn: str

    def as_dict(self) -> dict[str, str]:
        return {"policy": self.policy, "level": self.level, "message": self.message, "urn": self.urn}


@dataclass(frozen=True)
class ResourceInput:
    type: str
    name: str
    urn: str
    props: Mapping[str, Any]
    # The resource's provider (its inputs, e.g. a Kubernetes provider's default namespace), as the CLI sends it.
    provider: Mapping[str, Any] | None = None
    provider_type: str = ""


def _provider(r: ResourceInput) -> Any:
    if r.provider is None:
        return None
    return analyzer_pb2.AnalyzerProviderResource(type=r.provider_type, properties=_struct(r.provider), urn="", name="provider")


def _struct(props: Mapping[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(json.loads(json.dumps(props, default=str)))
    return struct


def _diagnostics(response: Any) -> list[Diagnostic]:
    return [Diagnostic(d.policyName, LEVELS[d.enforcementLevel], d.message, d.urn) for d in response.diagnostics]


class PolicyPack:
    """A running pack process. Use as a context manager; one process serves many requests."""

    def __init__(self, *, stack: str = "dev", dry_run: bool = True, python: str = sys.executable) -> None:
        env = {
            **os.environ,
            "PULUMI_PROJECT": PROJECT,
            "PULUMI_STACK": stack,
            "PULUMI_DRY_RUN": "true" if dry_run else "false",
            "PULUMI_CONFIG": "{}",
        }
        self._process = subprocess.Popen(
            [python, "-u", "-m", "pulumi.policy", "127.0.0.1:0", "."],
            cwd=POLICIES,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        first = self._process.stdout.readline().strip()
        if not first.isdigit():
            self._process.kill()
            _, err = self._process.communicate(timeout=10)
            raise RuntimeError(f"policy pack did not start (first line {first!r}):\n{err}")
        self._channel = grpc.insecure_channel(f"127.0.0.1:{first}")
        self._stub = analyzer_pb2_grpc.AnalyzerStub(self._channel)

    def __enter__(self) -> PolicyPack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()
        self._process.kill()
        self._process.communicate(timeout=10)

    def info(self) -> Any:
        return self._stub.GetAnalyzerInfo(empty_pb2.Empty())

    def policy_levels(self) -> dict[str, str]:
        return {p.name: LEVELS[p.enforcementLevel] for p in self.info().policies}

    def configure(self, config: Mapping[str, str | Mapping[str, Any]]) -> None:
        """Set enforcement levels / properties per policy. Replaces the whole map, as the CLI does."""
        policy_config = {}
        for name, value in config.items():
            if isinstance(value, str):
                policy_config[name] = analyzer_pb2.PolicyConfig(enforcementLevel=LEVEL_VALUES[value])
            else:
                level = LEVEL_VALUES[value.get("enforcementLevel", "mandatory")]
                props = {k: v for k, v in value.items() if k != "enforcementLevel"}
                policy_config[name] = analyzer_pb2.PolicyConfig(enforcementLevel=level, properties=_struct(props))
        self._stub.Configure(analyzer_pb2.ConfigureAnalyzerRequest(policyConfig=policy_config))

    def analyze(
        self, resource_type: str, props: Mapping[str, Any], name: str = "test", urn: str | None = None, provider: Any = None
    ) -> list[Diagnostic]:
        urn = urn or f"urn:pulumi:test::{PROJECT}::{resource_type}::{name}"
        request = analyzer_pb2.AnalyzeRequest(type=resource_type, properties=_struct(props), urn=urn, name=name, provider=provider)
        return _diagnostics(self._stub.Analyze(request))

    def analyze_stack(self, resources: Iterable[ResourceInput]) -> list[Diagnostic]:
        request = analyzer_pb2.AnalyzeStackRequest(
            resources=[
                analyzer_pb2.AnalyzerResource(type=r.type, name=r.name, urn=r.urn, properties=_struct(r.props), provider=_provider(r))
                for r in resources
            ]
        )
        return _diagnostics(self._stub.AnalyzeStack(request))

    def analyze_all(self, resources: list[ResourceInput]) -> list[Diagnostic]:
        """What `pulumi preview --policy-pack` does: Analyze per resource, then AnalyzeStack once."""
        found: list[Diagnostic] = []
        for r in resources:
            # The engine attributes a resource policy's diagnostic to the resource it analysed.
            found += [replace(d, urn=d.urn or r.urn) for d in self.analyze(r.type, r.props, r.name, r.urn, _provider(r))]
        return found + self.analyze_stack(resources)
