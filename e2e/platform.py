"""Everything `pulumi up` of the stack meets, on this machine: the real engine against local parts.

Real: the Pulumi CLI (engine), the Python language host, the Kubernetes provider (all built from
source into the tool cache, `e2e/tools.toml`), kube-apiserver, etcd, kube-controller-manager,
kube-scheduler and kwok's fake nodes (`e2e/cluster.py`), Helm inside the provider fetching the
pinned chart over HTTPS (`e2e/chart_repo.py`), the policy pack run by the CLI.
**Stand-ins** (nothing real can run here): the `aws` provider plugin over a moto server, the
`gitlab` provider plugin over a GitLab API stand-in (`e2e/standins/`).

Every process listens on 127.0.0.1 only and runs in its own process group; `stop()` ends them all,
and `python -m e2e.demo down` does the same from the pid file for a platform left running.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import certifi
import yaml

from .certs import issue_certificates
from .cluster import LocalCluster, free_port, stop_processes
from .tools import ROOT, Tool, ToolError, cache_root, ensure, load_tools, shared_dir

CONTEXT = "gbr-local"
PROJECT = "gitlab-buildkit-runner"
# The nodes the stack's pods may land on (the confined mode's nodeSelector names the architecture).
NODES = {f"kwok-node-{i}": {"kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"} for i in (1, 2)}
# Plugin versions the engine asks for: the Python SDKs pinned in requirements.txt.
STANDIN_PLUGINS = {"aws": ("7.51.1", "e2e.standins.aws_provider"), "gitlab": ("10.4.0", "e2e.standins.gitlab_provider")}
ENGINE_TOOLS = ["pulumi", "pulumi-language-python", "pulumi-kubernetes"]


class PlatformError(RuntimeError):
    """A part of the local platform did not start; the message names it and carries its log tail."""


def _sdk_version(package: str) -> str:
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if line.startswith(f"{package}=="):
            return line.split("==", 1)[1].strip()
    raise PlatformError(f"requirements.txt pins no {package}")


@dataclass(frozen=True)
class Engine:
    """The CLI folder (pulumi and its Python language host) and the built Kubernetes provider."""

    bin_dirs: tuple[Path, ...]
    kubernetes: Tool
    origin: str

    @property
    def pulumi(self) -> Path:
        return self.bin_dirs[0] / "pulumi"


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text)[:3])


def installed_cli(pinned: str) -> Path | None:
    """A real Pulumi CLI on PATH at the pinned version or newer, with its bundled Python language host
    beside it (as the release archives ship it); GBR_BUILT_PULUMI=1 ignores it."""
    found = shutil.which("pulumi")
    if not found or os.environ.get("GBR_BUILT_PULUMI") == "1":
        return None
    folder = Path(found).resolve().parent
    if not (folder / "pulumi-language-python").exists():
        return None
    result = subprocess.run([found, "version"], capture_output=True, text=True, timeout=60, check=False)
    return folder if result.returncode == 0 and _version(result.stdout) >= _version(pinned) else None


def engine_tools() -> Engine:
    """The CLI and language host (a real CLI on PATH when it is recent enough, else built from source)
    and the Kubernetes provider (always built: its plugin version must equal the pinned Python SDK)."""
    pins = load_tools()
    cli = installed_cli(pins["pulumi"].version)
    tools = ensure(["pulumi-kubernetes"] if cli else ENGINE_TOOLS)
    release, sdk = tools["pulumi-kubernetes"].spec["release"], _sdk_version("pulumi-kubernetes")
    if release != sdk:
        raise ToolError(f"pulumi-kubernetes plugin {release} (e2e/tools.toml) differs from the Python SDK {sdk} (requirements.txt)")
    if cli:
        return Engine((cli,), tools["pulumi-kubernetes"], f"the Pulumi CLI on PATH ({cli})")
    return Engine(
        (_bundle(tools["pulumi"], tools["pulumi-language-python"]),),
        tools["pulumi-kubernetes"],
        f"Pulumi CLI {tools['pulumi'].version} built into {cache_root()}",
    )


DYNAMIC_PROVIDER = "pulumi-resource-pulumi-python"


def _dynamic_provider_shim(cli: Tool) -> Path:
    """`pulumi-resource-pulumi-python`, the script a release archive ships beside the CLI, which runs a
    Python program's dynamic providers (`python -m pulumi.dynamic` in the program's virtualenv): from the
    Go module of the CLI's own SDK, which building the CLI downloaded.
    Ref: https://github.com/pulumi/pulumi/blob/v3.274.0/sdk/python/dist/pulumi-resource-pulumi-python"""
    gomodcache = subprocess.run(["go", "env", "GOMODCACHE"], capture_output=True, text=True, check=True).stdout.strip()
    shim = Path(gomodcache) / "github.com" / "pulumi" / "pulumi" / "sdk" / f"v3@{cli.version}" / "python" / "dist" / DYNAMIC_PROVIDER
    if not shim.is_file():
        subprocess.run(
            ["go", "mod", "download", f"github.com/pulumi/pulumi/sdk/v3@{cli.version}"], check=True, capture_output=True, timeout=600
        )
    return shim


def _bundle(cli: Tool, host: Tool) -> Path:
    """The CLI, the language host and the dynamic-provider script in one folder, as a release archive ships
    them: the CLI uses a language host beside itself without warning about one found on PATH. Hard links,
    not copies."""
    folder = cache_root() / f"pulumi-bundle-{cli.version}-python-{host.version}"
    binaries = [cli.binary(b) for b in cli.spec["binaries"]] + [host.binary(b) for b in host.spec["binaries"]]
    if not (folder / DYNAMIC_PROVIDER).exists():
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy2(_dynamic_provider_shim(cli), folder / DYNAMIC_PROVIDER)
        (folder / DYNAMIC_PROVIDER).chmod(0o755)
    if not all((folder / b.name).exists() for b in binaries):
        folder.mkdir(parents=True, exist_ok=True)
        for binary in binaries:
            (folder / binary.name).unlink(missing_ok=True)
            try:
                os.link(binary, folder / binary.name)
            except OSError:
                shutil.copy2(binary, folder / binary.name)
    return folder


def plugin_home(engine: Engine) -> Path:
    """A PULUMI_HOME in the tool cache with the built Kubernetes provider installed as its plugin."""
    provider = engine.kubernetes
    release = provider.spec["release"]
    home = cache_root() / f"pulumi-home-kubernetes-{release}"
    if not (home / "plugins" / f"resource-kubernetes-v{release}").is_dir():
        run_pulumi(
            engine,
            home,
            ["plugin", "install", "resource", "kubernetes", release, "--file", str(provider.binary("pulumi-resource-kubernetes"))],
        )
    return home


def base_env(engine: Engine, home: Path) -> dict[str, str]:
    path = os.pathsep.join([*(str(d) for d in engine.bin_dirs), os.environ.get("PATH", "")])
    return {
        **os.environ,
        "PATH": path,
        "PULUMI_HOME": str(home),
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_SKIP_CONFIRMATIONS": "true",
        "PULUMI_DIY_BACKEND_NO_LEGACY_WARNING": "true",
        "NO_COLOR": "1",
    }


def run_pulumi(engine: Engine, home: Path, args: list[str]) -> None:
    result = subprocess.run([str(engine.pulumi), *args], env=base_env(engine, home), capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise PlatformError(f"pulumi {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}")


@dataclass
class LocalPlatform:
    workdir: Path
    cluster: LocalCluster | None = None
    processes: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    chart_repository: str = ""
    gitlab_api: str = ""
    aws_endpoint: str = ""
    kubeconfig: Path = Path()
    engine: Engine = field(init=False)
    gitlab_token: str = field(default_factory=lambda: "glpat-" + secrets.token_hex(10))

    # --- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> LocalPlatform:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.engine = engine_tools()
        home = self._pulumi_home(self.engine, plugin_home(self.engine))
        try:
            self.cluster = LocalCluster(self.workdir / "cluster", nodes=NODES).start()
            self.kubeconfig = self.cluster.write_kubeconfig(self.workdir / "kubeconfig", context=CONTEXT)
            self.aws_endpoint = self._moto()
            self.gitlab_api = self._serve(
                "gitlab-api",
                [
                    sys.executable,
                    "-m",
                    "e2e.standins.gitlab_api",
                    "--token",
                    self.gitlab_token,
                    "--state",
                    str(self.workdir / "gitlab.json"),
                ],
            )
            ca, _, _ = issue_certificates(self.workdir / "certs", "gitlab-buildkit-runner e2e chart repository CA")
            self.chart_repository = self._serve(
                "chart-repo",
                [
                    sys.executable,
                    "-m",
                    "e2e.chart_repo",
                    "--charts",
                    str(charts_dir()),
                    "--certs",
                    str(self.workdir / "certs"),
                    "--site",
                    str(self.workdir / "charts"),
                ],
            )
        except BaseException:
            self.stop()
            raise
        bundle = self.workdir / "certs" / "bundle.pem"
        bundle.write_text(Path(certifi.where()).read_text() + ca.read_text())
        kubectl = str(ensure(["kubernetes"])["kubernetes"].home / "bin")
        engine_env = base_env(self.engine, home)
        self.env = {
            **engine_env,
            "PATH": os.pathsep.join([engine_env["PATH"], kubectl]),
            "PULUMI_BACKEND_URL": f"file://{self.workdir / 'state'}",
            "PULUMI_CONFIG_PASSPHRASE": "local-e2e-passphrase",
            "KUBECONFIG": str(self.kubeconfig),
            "GBR_AWS_ENDPOINT": self.aws_endpoint,
            "GBR_GITLAB_API": self.gitlab_api,
            "GBR_STANDIN_LOG": str(self.workdir / "standins.log"),
            "GITLAB_TOKEN": self.gitlab_token,
            "SSL_CERT_FILE": str(bundle),
        }
        (self.workdir / "state").mkdir(exist_ok=True)
        self._write_pids()
        return self

    def _pulumi_home(self, engine: Engine, cached: Path) -> Path:
        """This run's PULUMI_HOME: the cached Kubernetes plugin linked in, the stand-in plugins
        installed with `pulumi plugin install --file` (wrappers that run this checkout's code)."""
        home = self.workdir / "pulumi-home"
        (home / "plugins").mkdir(parents=True, exist_ok=True)
        # The engine lists plugin folders without following links: real folders, linked files.
        for entry in (cached / "plugins").iterdir():
            target = home / "plugins" / entry.name
            if entry.is_dir():
                target.mkdir(exist_ok=True)
                for item in entry.iterdir():
                    if not (target / item.name).exists():
                        (target / item.name).symlink_to(item)
            elif not target.exists():
                target.touch()
        for name, (version, module) in STANDIN_PLUGINS.items():
            if (home / "plugins" / f"resource-{name}-v{version}").is_dir():
                continue
            wrapper = self.workdir / "plugins" / f"pulumi-resource-{name}"
            wrapper.parent.mkdir(parents=True, exist_ok=True)
            wrapper.write_text(
                f'#!/bin/sh\n# Stand-in provider plugin ({module}); see e2e/standins/.\ncd "{ROOT}" && PYTHONPATH="{ROOT}" exec "{sys.executable}" -m {module} "$@"\n'
            )
            wrapper.chmod(0o755)
            run_pulumi(engine, home, ["plugin", "install", "resource", name, version, "--file", str(wrapper)])
        return home

    def _start(
        self, name: str, command: list[str], env: dict[str, str] | None = None, url_on_stdout: bool = False
    ) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("wb")
        stdout = subprocess.PIPE if url_on_stdout else log  # a pipe only for the one line that names the URL
        process = subprocess.Popen(command, stdout=stdout, stderr=log, cwd=ROOT, env=env, start_new_session=True)
        self.processes.append((name, process))
        return process

    def _serve(self, name: str, command: list[str]) -> str:
        """Start a server that prints its URL on its first line."""
        process = self._start(name, command, url_on_stdout=True)
        assert process.stdout is not None
        line = process.stdout.readline().decode().strip()
        if not line.startswith(("http://", "https://")):
            raise PlatformError(f"{name} did not start:\n{self._tail(name)}")
        return line

    def _moto(self) -> str:
        port = free_port()
        server = Path(sys.executable).with_name("moto_server")
        env = {**os.environ, "HOME": str(self.workdir / "moto")}
        self._start("moto", [str(server), "-H", "127.0.0.1", "-p", str(port)], env=env)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=2).close()
                return url
            except OSError:
                time.sleep(0.3)
        raise PlatformError(f"moto_server did not answer on {url} in 60 s:\n{self._tail('moto')}")

    def _tail(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-20:]) if path.exists() else "(no log)"

    def _write_pids(self) -> None:
        pids = [p.pid for _, p in self.processes] + ([p.pid for _, p in self.cluster.processes] if self.cluster else [])
        (self.workdir / "pids.json").write_text(json.dumps(pids))

    def stop(self) -> None:
        stop_processes(self.processes, grace=15)
        if self.cluster:
            self.cluster.stop()
        stop_plugins(self.workdir)
        (self.workdir / "pids.json").unlink(missing_ok=True)

    # --- projects and stacks ------------------------------------------------------------------------
    def project(self, name: str = "current", ref: str | None = None) -> Path:
        """A copy of the Pulumi program to run stacks from: this checkout's files, or a git ref's.

        Stacks are run from a copy, so their `Pulumi.<stack>.yaml` (with the passphrase salt) never
        lands in the checkout; the copy shares the checkout's .venv (Pulumi.yaml names `.venv`)."""
        dest = self.workdir / "projects" / name
        if dest.exists():
            return dest
        dest.mkdir(parents=True)
        if ref is None:
            for item in PROGRAM_FILES:
                source = ROOT / item
                if source.is_dir():
                    shutil.copytree(source, dest / item, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
                else:
                    shutil.copyfile(source, dest / item)
        else:
            archive = subprocess.run(["git", "archive", ref], cwd=ROOT, capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
        for shipped in dest.glob("Pulumi.*.yaml"):
            shipped.unlink()
        (dest / ".venv").symlink_to(ROOT / ".venv")
        return dest

    def pulumi(
        self, *args: str, project: Path, stack: str | None = None, check: bool = True, timeout: int = 900, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the real CLI in a project copy; its output goes to pulumi.log, and a failure raises with it."""
        command = [str(self.engine.pulumi), *args, "--non-interactive"]
        if stack is not None:
            command += ["--stack", stack]
        started = time.monotonic()
        result = subprocess.run(command, cwd=project, env={**self.env, **(env or {})}, capture_output=True, text=True, timeout=timeout)
        with (self.workdir / "pulumi.log").open("a") as out:
            out.write(
                f"$ pulumi {' '.join(args)} (stack {stack}, {project.name}) -> {result.returncode} in {time.monotonic() - started:.0f}s\n{result.stdout}\n{result.stderr}\n"
            )
        if check and result.returncode != 0:
            raise PlatformError(
                f"pulumi {' '.join(args)} (stack {stack}) failed ({result.returncode}):\n{result.stdout[-8000:]}\n{result.stderr[-3000:]}"
            )
        return result

    def outputs(self, project: Path, stack: str) -> dict[str, Any]:
        return dict(json.loads(self.pulumi("stack", "output", "--json", project=project, stack=stack).stdout))

    def export(self, project: Path, stack: str, *, show_secrets: bool = False) -> dict[str, Any]:
        args = ["stack", "export", *(["--show-secrets"] if show_secrets else [])]
        return dict(json.loads(self.pulumi(*args, project=project, stack=stack).stdout))

    def new_stack(self, stack: str, config: dict[str, Any], project: Path) -> None:
        """`pulumi stack init` with the stack's config pointed at this platform (context, chart repository)."""
        (project / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump({"config": localise(config, self.chart_repository)}, sort_keys=False))
        self.pulumi("stack", "init", stack, "--secrets-provider", "passphrase", project=project)

    def policy_config(self) -> Path:
        """The pack's config for this platform: the pinned chart, from the local repository."""
        path = self.workdir / "policy-config.json"
        allowed = [{"chart": "gitlab-runner", "repository": self.chart_repository, "versions": ["0.86.0"]}]
        path.write_text(json.dumps({"helm-release-allow-listed": {"allowedCharts": allowed}}))
        return path

    def up_args(self, project: Path) -> list[str]:
        """`pulumi up` as CI runs it: with the pack (and this platform's chart in its config)."""
        return [
            "up",
            "--yes",
            "--skip-preview",
            "--policy-pack",
            str(project / "policies"),
            "--policy-pack-config",
            str(self.policy_config()),
        ]


# What a stack's run needs of the checkout (the program, its pack, the pins).
PROGRAM_FILES = ("Pulumi.yaml", "__main__.py", "components", "policies", "requirements.txt", "requirements-dev.txt", "cicd")


def namespaced(config: dict[str, Any], stack: str) -> dict[str, Any]:
    """A stack's config with namespaces of its own: stacks that share this platform's one cluster would
    otherwise share namespaces (on real clusters they differ by context)."""
    config = json.loads(json.dumps(config))
    kube = config.setdefault(f"{PROJECT}:kubernetes", {})
    kube.update({"managerNamespace": f"{stack}-runner", "jobNamespace": f"{stack}-runner-jobs"})
    return config


def localise(config: dict[str, Any], chart_repository: str) -> dict[str, Any]:
    """A stack's config pointed at this platform: its kubeconfig context and chart repository."""
    result = json.loads(json.dumps(config))
    kubernetes = result.setdefault(f"{PROJECT}:kubernetes", {})
    kubernetes["context"] = CONTEXT
    runner = result.setdefault(f"{PROJECT}:runner", {})
    runner["chartRepository"] = chart_repository
    return result


def charts_dir() -> Path:
    folder = Path(os.environ.get("GITLAB_RUNNER_CHARTS") or shared_dir() / "charts")
    if not any(folder.glob("gitlab-runner-*.tgz")):
        raise PlatformError(
            f"no gitlab-runner chart tarball in {folder} (set GITLAB_RUNNER_CHARTS to a folder holding gitlab-runner-0.86.0.tgz)"
        )
    return folder


def stack_file_config(name: str) -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / f"Pulumi.{name}.yaml").read_text())["config"])


def stop_plugins(workdir: Path) -> None:
    """End every process the engine started for this platform (CLI, language host, program, policy
    pack, plugins) that outlived it, e.g. after a timeout: they all carry this platform's PULUMI_HOME."""
    marker = f"PULUMI_HOME={workdir / 'pulumi-home'}".encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if marker in (proc / "environ").read_bytes().split(b"\0"):
                os.kill(int(proc.name), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            continue


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for init to reap it has stopped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def stop_from_pidfile(workdir: Path) -> int:
    """End every process a platform left running (`make demo-down`); returns how many were running."""
    stop_plugins(workdir)
    pids_file = workdir / "pids.json"
    if not pids_file.exists():
        shutil.rmtree(workdir, ignore_errors=True)
        return 0
    stopped = 0
    for pid in json.loads(pids_file.read_text()):
        try:
            os.killpg(pid, signal.SIGTERM)
            stopped += 1
        except ProcessLookupError:
            continue
    deadline = time.monotonic() + 20
    for pid in json.loads(pids_file.read_text()):
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
    pids_file.unlink()
    shutil.rmtree(workdir, ignore_errors=True)
    return stopped


def main() -> int:
    """`make tools`: the engine's parts built, and the Kubernetes provider installed as a plugin in the cache."""
    try:
        engine = engine_tools()
        home = plugin_home(engine)
    except (ToolError, PlatformError) as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    print(f"pulumi engine: {engine.origin}; Kubernetes provider plugin {engine.kubernetes.spec['release']} installed in {home}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
