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


def _go_env() -> dict[str, str]:
    return {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"}


def _wrapper(tool: Tool) -> Path:
    """The wrapper module: requires the tool at its version, with the replaces its build needs."""
    work = tool.home / "module"
    work.mkdir(parents=True, exist_ok=True)
    spec = tool.spec
    lines = ["module example.com/gbr-tools", "", "go 1.24.0", "", f"require {spec['module']} {tool.version}"]
    lines += [f"require {pin} {tool.version}" for pin in spec.get("pin", [])]
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
    elif "main" in spec:  # a package whose Main(os.Args) is the CLI
        (work / "main.go").write_text(
            f'package main\n\nimport (\n\t"os"\n\n\t"{spec["module"]}/{spec["main"]}"\n)\n\nfunc main() {{ {spec["main"]}.Main(os.Args) }}\n'
        )
    else:
        imports = "\n".join(f'\t_ "{spec["module"]}/{p}"' for p in spec["packages"])
        (work / "tools.go").write_text(f"//go:build tools\n\npackage tools\n\nimport (\n{imports}\n)\n")
    return work


def build(tool: Tool) -> None:
    started = time.monotonic()
    print(f">> {tool.name} {tool.version}: building into {tool.home}", flush=True)
    tool.home.mkdir(parents=True, exist_ok=True)
    work = _wrapper(tool)
    env = _go_env()
    print("   resolving modules (go mod tidy)", flush=True)
    _run(tool, "tidy", ["go", "mod", "tidy"], work, env)
    (tool.home / "bin").mkdir(exist_ok=True)
    if "main" in tool.spec or "source" in tool.spec:
        print(f"   compiling {tool.spec['binaries'][0]}", flush=True)
        _run(tool, "build", ["go", "build", "-trimpath", "-o", str(tool.binary(tool.spec["binaries"][0])), "."], work, env)
    else:
        major, minor = tool.version.lstrip("v").split(".")[:2]
        ldflags = " ".join(flag.format(version=tool.version, major=major, minor=minor) for flag in tool.spec.get("ldflags", []))
        packages = [f"{tool.spec['module']}/{p}" for p in tool.spec["packages"]]
        print(f"   compiling {', '.join(b for b in tool.spec['binaries'] if b not in tool.spec.get('files', {}))}", flush=True)
        _run(tool, "build", ["go", "build", "-trimpath", "-ldflags", ldflags, "-o", str(tool.home / "bin") + "/", *packages], work, env)
    for name, source in tool.spec.get("files", {}).items():
        module_dir = subprocess.run(
            ["go", "list", "-m", "-f", "{{.Dir}}", tool.spec["module"]], cwd=work, env=env, capture_output=True, text=True, check=False
        ).stdout.strip()
        if not module_dir or not (Path(module_dir) / source).is_file():
            raise ToolError(f"{tool.name} {tool.version}: {source} is not in the module ({module_dir or 'not found'})")
        shutil.copyfile(Path(module_dir) / source, tool.binary(name))
        tool.binary(name).chmod(0o755)
    shutil.rmtree(work, ignore_errors=True)
    print(f"   done in {time.monotonic() - started:.0f}s", flush=True)


def version_of(tool: Tool, binary: str) -> str:
    if binary in tool.spec.get("files", {}):
        return f"copied from {tool.spec['module']}@{tool.version}/{tool.spec['files'][binary]}"
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
