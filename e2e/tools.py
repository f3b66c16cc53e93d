"""Build the real components of the e2e tier from the Go module proxy, into a cache outside the checkout.

    python -m e2e.tools            # build what is missing, print each tool's own --version
    python -m e2e.tools --where    # print the cache folder

Idempotent: a tool whose binaries exist in tools/<name>-<version>/bin is not rebuilt. Each is built
from a small wrapper module of ours that requires the tool at its pinned version (a dependency's
`replace` directives are ignored, and `go install` refuses modules that have them), with CGO off and
-trimpath. Versions: e2e/tools.toml. Go caches stay where Go keeps them (GOMODCACHE, GOCACHE), also
outside the checkout, so clones and CI runs on one machine share them.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PINS = Path(__file__).with_name("tools.toml")
PROXY = os.environ.get("GOPROXY", "https://proxy.golang.org").split(",")[0]


class ToolError(RuntimeError):
    """A tool could not be built; the message names it, its version and the failing step."""


def cache_root() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "gitlab-buildkit-runner" / "tools"


@dataclass(frozen=True)
class Tool:
    name: str
    spec: dict

    @property
    def version(self) -> str:
        return str(self.spec["version"])

    @property
    def home(self) -> Path:
        return cache_root() / f"{self.name}-{self.version}"

    def binary(self, name: str) -> Path:
        return self.home / "bin" / name

    def built(self) -> bool:
        return all(self.binary(b).is_file() for b in self.spec["binaries"])


def load_tools() -> dict[str, Tool]:
    pins = tomllib.loads(PINS.read_text())
    return {name: Tool(name, spec) for name, spec in pins["tools"].items()}


def _run(tool: Tool, step: str, command: list[str], cwd: Path, env: dict[str, str]) -> None:
    log = tool.home / f"{step}.log"
    with log.open("w") as out:
        result = subprocess.run(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-15:])
        raise ToolError(f"{tool.name} {tool.version}: `{' '.join(command)}` failed (exit {result.returncode}); {log}:\n{tail}")


# What a cold build costs on this project's 2-core machine (README "Testing"): printed before it starts.
EXPECTED = {  # measured cold on a 2-core machine (README "A cold CI run, measured"); up to twice that when busy
    "kubernetes": " (cold: about 5 min)",
    "pulumi": " (cold: about 4 min, 2.2 GiB)",
    "pulumi-language-python": " (cold: about 1 min)",
    "pulumi-kubernetes": " (cold: about 9 min, 4.6 GiB)",
}


def _go_env() -> dict[str, str]:
    return {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"}


def shared_dir() -> Path:
    """The workspace's shared/ folder (beside the checkout, as in CI), or $GBR_SHARED_DIR."""
    return Path(os.environ.get("GBR_SHARED_DIR") or ROOT.parent / "shared")


def _upstream_module(tool: Tool, work: Path) -> None:
    """An unmodified upstream module from shared/upstream/: copied, its sibling-folder replaces dropped
    and the modules they pointed at required at the tool's own version (both are on the proxy)."""
    source = shared_dir() / "upstream" / tool.spec["upstream"]
    if not (source / "go.mod").is_file():
        raise ToolError(
            f"{tool.name} {tool.version}: its source is not at {source} (the workspace's shared/upstream/; "
            "set GBR_SHARED_DIR to the folder that holds upstream/)"
        )
    for item in source.iterdir():
        if item.is_file():
            shutil.copyfile(item, work / item.name)
    text = (work / "go.mod").read_text()
    text = re.sub(r"^\s*(replace\s+)?[\w./-]+(\s+v\S+)?\s*=>\s*\.\.?/\S*\s*$", "", text, flags=re.MULTILINE)
    for module in tool.spec.get("require", []):  # its own requirement lines, moved to the tool's version
        text, count = re.subn(rf"^(\s*(?:require\s+)?{re.escape(module)}\s+)v\S+", rf"\g<1>{tool.version}", text, flags=re.MULTILINE)
        if count != 1:
            raise ToolError(f"{tool.name} {tool.version}: {source / 'go.mod'} does not require {module} exactly once")
    (work / "go.mod").write_text(text)


def _wrapper(tool: Tool) -> Path:
    """The wrapper module: requires the tool at its version, with the replaces its build needs."""
    work = tool.home / "module"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    spec = tool.spec
    if "upstream" in spec:
        _upstream_module(tool, work)
        return work
    lines = ["module example.com/gbr-tools", "", "go 1.24.0", "", f"require {spec['module']} {tool.version}"]
    lines += [f"require {pin} {tool.version}" for pin in spec.get("pin", [])]
    lines += [f"require {module} {version}" for module, version in spec.get("pin_versions", {}).items()]
    lines += [f"replace {line}" for line in spec.get("replace", [])]
    if "staging_version" in spec:
        url = f"{PROXY}/{spec['module']}/@v/{tool.version}.mod"
        try:
            with urllib.request.urlopen(url, timeout=120) as response:
                upstream = response.read().decode()
        except OSError as exc:
            raise ToolError(f"{tool.name} {tool.version}: cannot read {url} ({exc})") from None
        staging = re.findall(r"^\s*(k8s\.io/[\w.-]+) => \./staging", upstream, re.MULTILINE)
        if not staging:
            raise ToolError(f"{tool.name} {tool.version}: no staging replaces found in {url}")
        lines += ["", "replace ("] + [f"\t{m} => {m} {spec['staging_version']}" for m in staging] + [")"]
    (work / "go.mod").write_text("\n".join(lines) + "\n")
    if "source" in spec:  # a main of ours, in this repository, built against the pinned module
        for go_file in (ROOT / spec["source"]).glob("*.go"):
            shutil.copyfile(go_file, work / go_file.name)
        for name in spec.get("embed", {}):  # placeholders until the module is resolved (see build)
            (work / name).write_text("{}")
    elif "main" in spec:  # a package whose Main(os.Args) is the CLI
        (work / "main.go").write_text(
            f'package main\n\nimport (\n\t"os"\n\n\t"{spec["module"]}/{spec["main"]}"\n)\n\nfunc main() {{ {spec["main"]}.Main(os.Args) }}\n'
        )
    else:
        imports = "\n".join(f'\t_ "{spec["module"]}/{p}"' for p in spec["packages"])
        (work / "tools.go").write_text(f"//go:build tools\n\npackage tools\n\nimport (\n{imports}\n)\n")
    return work


def _module_dir(tool: Tool, work: Path, env: dict[str, str]) -> Path:
    found = subprocess.run(
        ["go", "list", "-m", "-f", "{{.Dir}}", tool.spec["module"]], cwd=work, env=env, capture_output=True, text=True, check=False
    ).stdout.strip()
    if not found:
        raise ToolError(f"{tool.name} {tool.version}: module {tool.spec['module']} not found after go mod tidy")
    return Path(found)


def _ldflags(tool: Tool) -> str:
    major, minor = tool.version.lstrip("v").split(".")[:2]
    fields = {"version": tool.version, "major": major, "minor": minor, "release": tool.spec.get("release", tool.version)}
    return " ".join(flag.format(**fields) for flag in tool.spec.get("ldflags", []))


def build(tool: Tool) -> None:
    started = time.monotonic()
    print(f">> {tool.name} {tool.version}: building into {tool.home}{EXPECTED.get(tool.name, '')}", flush=True)
    tool.home.mkdir(parents=True, exist_ok=True)
    work = _wrapper(tool)
    env = _go_env()
    print("   resolving modules (go mod tidy)", flush=True)
    _run(tool, "tidy", ["go", "mod", "tidy"], work, env)
    for name, source in tool.spec.get("embed", {}).items():
        path = _module_dir(tool, work, env) / source
        if not path.is_file():
            raise ToolError(f"{tool.name} {tool.version}: {source} is not in the module")
        shutil.copyfile(path, work / name)
    (tool.home / "bin").mkdir(exist_ok=True)
    ldflags = _ldflags(tool)
    if "main" in tool.spec or "source" in tool.spec or "upstream" in tool.spec:
        print(f"   compiling {tool.spec['binaries'][0]}", flush=True)
        _run(
            tool,
            "build",
            ["go", "build", "-trimpath", "-ldflags", ldflags, "-o", str(tool.binary(tool.spec["binaries"][0])), "."],
            work,
            env,
        )
    else:
        packages = [f"{tool.spec['module']}/{p}" for p in tool.spec["packages"]]
        print(f"   compiling {', '.join(b for b in tool.spec['binaries'] if b not in tool.spec.get('files', {}))}", flush=True)
        _run(tool, "build", ["go", "build", "-trimpath", "-ldflags", ldflags, "-o", str(tool.home / "bin") + "/", *packages], work, env)
    for name, source in tool.spec.get("files", {}).items():
        origin = (work if "upstream" in tool.spec else _module_dir(tool, work, env)) / source
        if not origin.is_file():
            raise ToolError(f"{tool.name} {tool.version}: {source} is not in the module ({origin.parent})")
        shutil.copyfile(origin, tool.binary(name))
        tool.binary(name).chmod(0o755)
    shutil.rmtree(work, ignore_errors=True)
    print(f"   done in {time.monotonic() - started:.0f}s", flush=True)


def version_of(tool: Tool, binary: str) -> str:
    if "upstream" in tool.spec:
        return f"built from the unmodified {tool.spec['upstream']} source against pkg/sdk {tool.version}"
    if binary in tool.spec.get("files", {}):
        return f"copied from {tool.spec['module']}@{tool.version}/{tool.spec['files'][binary]}"
    if "source" in tool.spec and "release" in tool.spec:
        return f"{tool.spec['release']} (built from {tool.spec['source']} against {tool.spec['module']}@{tool.version})"
    if "source" in tool.spec:
        return f"built from {tool.spec['source']} against {tool.spec['module']}@{tool.version}"
    result = subprocess.run(
        [str(tool.binary(binary)), *tool.spec.get("version_args", ["--version"])], capture_output=True, text=True, timeout=60
    )
    return (result.stdout or result.stderr).strip().splitlines()[0] if (result.stdout or result.stderr) else "?"


def ensure(names: list[str] | None = None) -> dict[str, Tool]:
    """Build what is missing; returns the tools by name. Raises ToolError naming the tool that failed."""
    if shutil.which("go") is None:
        raise ToolError("the Go toolchain is not on PATH (the e2e tier builds its components from the Go module proxy)")
    tools = load_tools()
    for name in names or list(tools):
        if not tools[name].built():
            build(tools[name])
    return tools


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--where", action="store_true", help="print the cache folder and exit")
    args = parser.parse_args(argv)
    if args.where:
        print(cache_root())
        return 0
    try:
        tools = ensure()
    except ToolError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    for tool in tools.values():
        for binary in tool.spec["binaries"]:
            print(f"{binary}: {version_of(tool, binary)}  ({tool.binary(binary)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
