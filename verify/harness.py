"""Run the real stack program under Pulumi's mocks and record everything it registers.

Used by the tests, `verify.synth` and the benchmark, so all three exercise the same path. What the
mocks cannot do (provider Check, engine-applied `additional_secret_outputs`) is documented in the
README; the recording monitor reads `additionalSecretOutputs` from the real RegisterResource request
so secretness that the engine would apply is still visible.
"""

from __future__ import annotations

import base64
import json
import runpy
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import dill
import pulumi
from google.protobuf import json_format
from pulumi.runtime import config as runtime_config
from pulumi.runtime import settings as runtime_settings
from pulumi.runtime.mocks import MockMonitor, MockResourceArgs, Mocks

from components.marks import PROJECT

from .stack_file import StackFileError, read_stack_file

ROOT = Path(__file__).resolve().parent.parent
SECRET_SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
ACCOUNT = "123456789012"
MOCK_RUNNER_TOKEN = "glrt-mockRunnerToken0123456789"
MOCK_SECRET_ACCESS_KEY = "mockSecretAccessKey/0123456789abcdefghij"
REDACTED = "[secret]"


@dataclass
class Registration:
    type: str
    name: str
    urn: str
    parent: str
    custom: bool
    provider: str
    protect: bool
    dependencies: list[str]
    additional_secret_outputs: list[str]
    aliases: list[str] = field(default_factory=list)  # URNs this resource was known by (ResourceOptions.aliases)
    resource_id: str = ""  # the id the (mock) provider returned
    request_object: Any = None  # the RegisterResource protobuf Struct, converted on first use
    response_object: Any = None

    @cached_property
    def raw_inputs(self) -> dict[str, Any]:
        """Inputs as sent to the engine, with Pulumi's secret envelopes kept."""
        return json_format.MessageToDict(self.request_object) if self.request_object is not None else {}

    @cached_property
    def outputs(self) -> dict[str, Any]:
        return json_format.MessageToDict(self.response_object) if self.response_object is not None else {}

    @property
    def inputs(self) -> dict[str, Any]:
        return unwrap_secrets(self.raw_inputs)

    @property
    def redacted_inputs(self) -> dict[str, Any]:
        return unwrap_secrets(self.raw_inputs, redact=True)

    def secret_paths(self) -> set[str]:
        return set(_secret_paths(self.raw_inputs, ""))


def _is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SECRET_SIG_KEY) == SECRET_SIG


def unwrap_secrets(value: Any, redact: bool = False) -> Any:
    if _is_secret(value):
        return REDACTED if redact else unwrap_secrets(value.get("value"), redact)
    if isinstance(value, dict):
        return {k: unwrap_secrets(v, redact) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap_secrets(v, redact) for v in value]
    return value


def _secret_paths(value: Any, path: str):
    if _is_secret(value):
        yield path
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _secret_paths(v, f"{path}.{k}" if path else k)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _secret_paths(v, f"{path}[{i}]")


class StackMocks(Mocks):
    """Computed outputs the real providers would return, shaped like theirs."""

    def __init__(self, region: str, preview: bool = False, oidc_providers: bool = True) -> None:
        self.region = region
        # Whether the account holds an IAM OIDC provider for any URL (credentials.oidcProvider 'existing').
        self.oidc_providers = oidc_providers
        # In a first `pulumi preview` nothing exists yet: providers return no computed outputs, so
        # everything derived from them (ARNs, URLs, ids, tokens) is unknown to the program.
        self.preview = preview

    def new_resource(self, args: MockResourceArgs) -> tuple[str, dict]:
        state = dict(args.inputs)
        if self.preview:
            return "", state
        typ, name = args.typ, args.inputs.get("name") or args.name
        resource_id = f"{args.name}-id"
        if typ == "aws:ecr/repository:Repository":
            state["arn"] = f"arn:aws:ecr:{self.region}:{ACCOUNT}:repository/{name}"
            state["repositoryUrl"] = f"{ACCOUNT}.dkr.ecr.{self.region}.amazonaws.com/{name}"
            resource_id = name
        elif typ in ("aws:iam/policy:Policy", "aws:iam/user:User", "aws:iam/role:Role"):
            kind = typ.split(":")[-1].lower()
            state["arn"] = f"arn:aws:iam::{ACCOUNT}:{kind}/{name}"
            state.setdefault("name", name)
        elif typ == "aws:iam/openIdConnectProvider:OpenIdConnectProvider":
            host = str(args.inputs["url"]).removeprefix("https://")
            state["arn"] = f"arn:aws:iam::{ACCOUNT}:oidc-provider/{host}"
        elif typ == "aws:iam/accessKey:AccessKey":
            resource_id = f"AKIAMOCK{zlib.crc32(args.name.encode()):012d}"  # deterministic across runs
            state["secret"] = MOCK_SECRET_ACCESS_KEY
        elif typ == "gitlab:index/userRunner:UserRunner":
            resource_id = "4242"
            state["token"] = MOCK_RUNNER_TOKEN
        elif typ == "pulumi-python:dynamic:Resource":
            # A dynamic provider runs in the program's own process under the engine: here too, for real
            # (the warm builders' certificates are generated, not faked).
            plain = unwrap_secrets(dict(args.inputs))
            provider = dill.loads(base64.b64decode(plain.pop("__provider")))
            result = provider.create(plain)
            resource_id, state = result.id, {**state, **(result.outs or {})}
        elif typ == "kubernetes:helm.sh/v3:Release":
            state["status"] = {"status": "deployed", "namespace": args.inputs.get("namespace"), "version": args.inputs.get("version")}
        return resource_id, state

    def call(self, args: Any) -> dict:  # type: ignore[override]  # the SDK accepts a plain dict (no failures)
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": ACCOUNT, "arn": f"arn:aws:iam::{ACCOUNT}:user/ci", "userId": "AIDAMOCK", "id": ACCOUNT}
        if args.token == "aws:index/getPartition:getPartition":
            return {"partition": "aws", "dnsSuffix": "amazonaws.com", "reverseDnsPrefix": "com.amazonaws", "id": "aws"}
        if args.token == "aws:iam/getOpenIdConnectProvider:getOpenIdConnectProvider":
            if not self.oidc_providers:  # the data source's failure when nothing matches, as the engine returns it
                return {}, [("url", "reading IAM OIDC Provider: couldn't find resource")]  # type: ignore[return-value]
            # An existing provider (credentials.oidcProvider 'existing'): found by ARN, or by URL in ACCOUNT.
            arn = args.args.get("arn") or f"arn:aws:iam::{ACCOUNT}:oidc-provider/{str(args.args.get('url')).removeprefix('https://')}"
            return {"arn": arn, "url": arn.split("oidc-provider/")[-1], "clientIdLists": [], "thumbprintLists": [], "tags": {}, "id": arn}
        raise NotImplementedError(f"no mock for invoke {args.token}")


ROOT_STACK_TYPE = "pulumi:pulumi:Stack"


def engine_urn(urn: str) -> str:
    """A URN as the engine writes it. The mock monitor keeps the root stack's type in the qualified type
    of top-level resources (`pulumi:pulumi:Stack$<type>`); the engine leaves it out.

    Ref: pulumi/pulumi sdk/go/common/resource/urn.go NewURN (the root stack type is not a parent type).
    """
    return urn.replace(f"::{ROOT_STACK_TYPE}$", "::", 1)


def _qualified_type(urn: str) -> str:
    return engine_urn(urn).split("::")[2]


def alias_urn(alias: Any, request: Any) -> str:
    """The URN an alias names, resolved the way the engine does: unset spec fields default to the resource's own.

    Ref: pulumi/pulumi sdk/proto/alias.proto and pkg/resource/deploy (alias URNs).
    """
    if alias.urn:
        return str(alias.urn)
    spec = alias.spec
    stack = spec.stack or pulumi.get_stack()
    project = spec.project or pulumi.get_project()
    parent = "" if spec.noParent else (spec.parentUrn or request.parent)
    typ = spec.type or request.type
    parent_type = _qualified_type(parent) if parent else ""
    if parent_type == ROOT_STACK_TYPE:
        parent_type = ""
    qualified = f"{parent_type}${typ}" if parent_type else typ
    return f"urn:pulumi:{stack}::{project}::{qualified}::{spec.name or request.name}"


class RecordingMonitor(MockMonitor):
    def __init__(self, mocks: Mocks) -> None:
        super().__init__(mocks)
        self.registrations: dict[str, Registration] = {}

    def make_urn(self, parent: str, type_: str, name: str) -> str:
        """The URN as the engine builds it: the parent's whole qualified type, then the resource's type.
        (MockMonitor keeps only the parent's last type, which differs from the engine's below the first
        level of components: a ProjectVariable in CiVariables in ApplicationProject.)
        Ref: https://github.com/pulumi/pulumi/blob/v3.274.0/sdk/go/common/resource/urn.go (NewURN: parentType is the parent URN's QualifiedType)
        """
        if parent:
            type_ = parent.split("::")[2] + "$" + type_
        return "urn:pulumi:" + "::".join([pulumi.get_stack(), pulumi.get_project(), type_, name])

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        if request.type == "pulumi:pulumi:Stack":
            return response
        reg = Registration(
            type=request.type,
            name=request.name,
            urn=response.urn,
            parent=request.parent,
            custom=bool(request.custom),
            provider=request.provider,
            protect=bool(request.protect),
            dependencies=list(request.dependencies),
            additional_secret_outputs=list(request.additionalSecretOutputs),
            aliases=self._aliases(request),
            resource_id=response.id,
            # Converting every Struct to a dict here would be paid per resource even when nobody reads it.
            request_object=request.object if request.HasField("object") else None,
            response_object=response.object if response.HasField("object") else None,
        )
        self.registrations[reg.urn] = reg
        return response

    def _aliases(self, request: Any) -> list[str]:
        """The resource's own aliases, and one per alias of its parent (children move with their parent):
        the engine's inheritedChildAlias, where a child name that starts with the parent's name takes the
        alias's name instead.
        Ref: https://github.com/pulumi/pulumi/blob/v3.274.0/pkg/resource/deploy/step_generator.go (generateAliases)
        """
        own = [*request.aliasURNs, *(alias_urn(a, request) for a in request.aliases)]
        parent = self.registrations.get(request.parent)
        inherited = []
        for parent_alias in [] if parent is None else parent.aliases:
            assert parent is not None
            prefix, qualified, alias_name = parent_alias.rsplit("::", 2)
            name = request.name
            if name.startswith(parent.name):
                name = alias_name + name[len(parent.name) :]
            inherited.append(f"{prefix}::{qualified}${request.type}::{name}")
        return list(dict.fromkeys([*own, *inherited]))


@dataclass
class ProgramRun:
    stack: str
    resources: list[Registration]
    outputs: dict[str, Any]

    def of_type(self, typ: str) -> list[Registration]:
        return [r for r in self.resources if r.type == typ]

    def one(self, typ: str, name: str | None = None) -> Registration:
        found = [r for r in self.of_type(typ) if name is None or r.name == name]
        if len(found) != 1:
            raise AssertionError(f"expected one {typ} {name or ''}, found {[r.name for r in found]}")
        return found[0]

    def by_urn(self, urn: str) -> Registration:
        return next(r for r in self.resources if r.urn == urn)


@cache
def _program_main() -> Any:
    namespace = runpy.run_path(str(ROOT / "__main__.py"), run_name="gitlab_buildkit_runner_program")
    return namespace["main"]


def load_config_file(path: Path) -> dict[str, Any]:
    """Project config of a Pulumi.<stack>.yaml-shaped file as {key: value}, namespace prefix removed.

    Read strictly (verify/stack_file.py): duplicate keys, non-core tags and alias bombs are errors.
    """
    data = read_stack_file(path)
    config = data.get("config") or {}
    if not isinstance(config, dict):
        raise StackFileError(f"{path}: 'config' must be a mapping of keys to values")
    prefix = f"{PROJECT}:"
    return {k.removeprefix(prefix): v for k, v in config.items() if isinstance(k, str) and k.startswith(prefix)}


def load_stack_file(stack: str) -> dict[str, Any]:
    return load_config_file(ROOT / f"Pulumi.{stack}.yaml")


def run_program(
    config: Mapping[str, Any],
    *,
    stack: str = "dev",
    secrets: Mapping[str, str] | None = None,
    other_config: Mapping[str, str] | None = None,
    monitor: RecordingMonitor | None = None,
    preview: bool = False,
    oidc_providers: bool = True,
) -> ProgramRun:
    """Run __main__.main() with this project config; returns every registration and the stack outputs."""
    flat = {f"{PROJECT}:{k}": json.dumps(v) if not isinstance(v, str) else v for k, v in config.items()}
    secret_keys = []
    for key, value in (secrets or {}).items():
        flat[f"{PROJECT}:{key}"] = value
        secret_keys.append(f"{PROJECT}:{key}")
    flat.update(other_config or {})
    runtime_config.set_all_config(flat, secret_keys)
    region = (config.get("registry") or {}).get("region", "eu-west-1")
    mocks = StackMocks(region, preview=preview, oidc_providers=oidc_providers)
    monitor = monitor or RecordingMonitor(mocks)
    runtime_settings.ROOT.set(None)  # a fresh root stack per run, so exports do not leak between runs
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=preview, monitor=monitor)
    main = _program_main()
    outputs: dict[str, Any] = {}

    @pulumi.runtime.test
    def program() -> Any:
        main()
        root = runtime_settings.get_root_resource()
        exported = dict(getattr(root, "outputs", {}) or {})
        keys = sorted(exported)
        return pulumi.Output.all(*[exported[k] for k in keys]).apply(lambda values: outputs.update(zip(keys, values, strict=True)))

    program()
    return ProgramRun(stack=stack, resources=list(monitor.registrations.values()), outputs=outputs)


def run_stack(stack: str) -> ProgramRun:
    return run_program(load_stack_file(stack), stack=stack)
