"""Real builds: the build template's own `script`, run as an unprivileged user with rootless BuildKit
(buildkitd, buildctl, `buildctl-daemonless.sh` and rootlesskit built from their Go modules, pinned in
e2e/tools.toml) against the ECR stand-in of e2e/ecr.py.

What is real: the script (extracted from templates/buildkit-build.yml as GitLab includes it), the
daemon, buildctl, rootlesskit and its user namespace (newuidmap with a subuid range, like the image's
UID 1000 `user`), runc, every push and pull, the existence checks (GNU wget over HTTPS).
What is replaced, and why: `docker-credential-ecr-login` (no ECR or AWS here) by a stand-in that
answers the stand-in registry's token for the project's access key; its download from S3 is served
from the session folder by a `wget` wrapper that passes every other call to the real wget.
What differs from a runner pod: the job runs on the host kernel under `setpriv`, not in a container
with the stack's security context (the pod side is proven by the pod admission tests); the registry
CA is trusted through `~/.config/buildkit/buildkitd.toml` and `~/.wgetrc` (ECR has a public CA).

Each job starts from an empty HOME and XDG_RUNTIME_DIR, as a CI pod does: the only cache a build can
reuse is the registry cache. Every process a job starts is killed when it ends, even on a timeout.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import platform
import pwd
import shlex
import shutil
import signal
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components.ci_variables import CiVariable, project_variable_specs, shared_variable_specs
from components.config import StackConfig
from verify.template import build_job

from . import busybox as busybox_tools
from . import confined
from .ecr import LocalEcr
from .tools import ROOT, cache_root, ensure

APPS = ROOT / "tests" / "fixtures" / "apps"
HELPER_BASE = "https://amazon-ecr-credential-helper-releases.s3.us-east-2.amazonaws.com"
# The machine's architecture as Go, OCI platforms and the template's helper download name it.
GOARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


class HostError(RuntimeError):
    """The machine cannot run rootless builds; the message says what is missing and how to fix it."""


@dataclass(frozen=True)
class BuildUser:
    uid: int
    gid: int
    name: str


def _subid_entry(path: Path, user: BuildUser) -> bool:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return False
    return any(line.split(":")[0] in (user.name, str(user.uid)) and line.count(":") == 2 for line in lines)


def _has_capabilities(path: str) -> bool:
    try:
        return bool(os.getxattr(path, "security.capability"))
    except OSError:
        return False


def build_user() -> BuildUser:
    """Who runs the job: the current user, or (as root) the user GBR_BUILD_UID names, default 1000 (the image's `user`)."""
    uid = os.geteuid() if os.geteuid() != 0 else int(os.environ.get("GBR_BUILD_UID", "1000"))
    try:
        entry = pwd.getpwuid(uid)
    except KeyError:
        raise HostError(
            f"no user with UID {uid}: newuidmap needs one (run `make build-host` as root, or set GBR_BUILD_UID to an unprivileged user's UID)"
        ) from None
    return BuildUser(uid, entry.pw_gid, entry.pw_name)


def check_host(*, buildah: bool = False) -> BuildUser:
    """Fail with one clear message naming everything missing, before any daemon starts."""
    problems: list[str] = []
    user = build_user()
    for tool in ("newuidmap", "newgidmap"):
        path = shutil.which(tool, path="/usr/bin:/bin:/usr/sbin:/sbin")
        if path is None:
            problems.append(f"{tool} is not installed (Debian package uidmap)")
        elif not os.stat(path).st_mode & 0o4000 and not _has_capabilities(path):
            problems.append(f"{path} is neither setuid nor has file capabilities: it cannot map the subuid range")
    for tool, package in (
        (("runc", "runc"), ("wget", "wget"), ("busybox", "busybox-static"))
        + ((("setcap", "libcap2-bin"),) if os.geteuid() == 0 else ())
        + ((("buildah", "buildah"),) if buildah else ())
    ):
        if shutil.which(tool, path="/usr/bin:/bin:/usr/sbin:/sbin") is None:
            problems.append(f"{tool} is not installed (Debian package {package})")
    for ids in (Path("/etc/subuid"), Path("/etc/subgid")):
        if not _subid_entry(ids, user):
            problems.append(f"{ids} has no range for {user.name} (UID {user.uid}); e.g. '{user.name}:100000:65536'")
    try:
        if int(Path("/proc/sys/user/max_user_namespaces").read_text()) == 0:
            problems.append("user namespaces are disabled (/proc/sys/user/max_user_namespaces is 0): rootless BuildKit needs them")
    except OSError:
        problems.append("cannot read /proc/sys/user/max_user_namespaces: is this Linux?")
    if os.geteuid() != 0 and user.uid == 0:
        problems.append("the build must not run as root")
    if problems:
        raise HostError(
            "this machine cannot run rootless builds:\n  - "
            + "\n  - ".join(problems)
            + "\nAs root, `make build-host` installs the Debian packages and adds the subuid/subgid ranges."
        )
    return user


# --- base images: nothing can be pulled from Docker Hub, so they are made here ------------------------
def _tar_layer(entries: list[tuple[str, Path | bytes | None, int, str]]) -> bytes:
    """A deterministic gzip'd layer: (path, source file | bytes | None for a dir, mode, symlink target or '')."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, source, mode, link in entries:
            info = tarfile.TarInfo(name)
            info.mtime, info.uid, info.gid, info.mode = 0, 0, 0, mode
            if link:
                info.type, info.linkname = tarfile.SYMTYPE, link
                tar.addfile(info)
            elif source is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                data = source if isinstance(source, bytes) else source.read_bytes()
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), compresslevel=6, mtime=0)


def _busybox_layer() -> tuple[bytes, str]:
    busybox = Path(shutil.which("busybox") or "/bin/busybox").resolve()
    applets = subprocess.run([str(busybox), "--list"], capture_output=True, text=True, check=True).stdout.split()
    version = subprocess.run([str(busybox)], capture_output=True, text=True, check=False).stdout.split()[1]
    entries: list[tuple[str, Path | bytes | None, int, str]] = [
        ("bin", None, 0o755, ""),
        ("bin/busybox", busybox, 0o755, ""),
        *((f"bin/{a}", None, 0o777, "busybox") for a in sorted(set(applets)) if a != "busybox"),
        ("etc", None, 0o755, ""),
        ("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n", 0o644, ""),
        ("etc/group", b"root:x:0:\nnogroup:x:65534:\n", 0o644, ""),
        ("root", None, 0o700, ""),
        ("tmp", None, 0o1777, ""),
    ]
    return _tar_layer(entries), version


def _golang_layer() -> tuple[bytes, str]:
    goroot = Path(subprocess.run(["go", "env", "GOROOT"], capture_output=True, text=True, check=True).stdout.strip())
    version = subprocess.run(["go", "env", "GOVERSION"], capture_output=True, text=True, check=True).stdout.strip()
    skip = {"test", "api", "doc", "misc", "lib/wasm", f"pkg/tool/linux_{GOARCH}/pprof", f"pkg/tool/linux_{GOARCH}/trace"}
    entries: list[tuple[str, Path | bytes | None, int, str]] = [("usr", None, 0o755, ""), ("usr/local", None, 0o755, "")]
    for path in sorted(goroot.rglob("*")):
        relative = path.relative_to(goroot).as_posix()
        if any(relative == s or relative.startswith(f"{s}/") for s in skip) or "/testdata" in f"/{relative}":
            continue
        name = f"usr/local/go/{relative}"
        if path.is_symlink():
            entries.append((name, None, 0o777, os.readlink(path)))
        elif path.is_dir():
            entries.append((name, None, 0o755, ""))
        else:
            entries.append((name, path, 0o755 if os.access(path, os.X_OK) else 0o644, ""))
    return _tar_layer([("usr/local/go", None, 0o755, ""), *entries]), version


BASES = {
    # name: (layer maker, image config edits); the golang image is busybox + GOROOT, like golang:alpine.
    "busybox": (_busybox_layer, ["--env", "PATH=/bin"]),
    "golang": (
        _golang_layer,
        [
            "--env",
            "PATH=/usr/local/go/bin:/bin",
            "--env",
            "HOME=/root",
            "--env",
            "GOTOOLCHAIN=local",
            "--env",
            "GOPROXY=off",
            "--env",
            "CGO_ENABLED=0",
        ],
    ),
}


def base_layer(name: str) -> tuple[Path, str]:
    """The cached layer of a base image (made once per machine and source version) and that version."""
    folder = cache_root().parent / "images"
    folder.mkdir(parents=True, exist_ok=True)
    make = BASES[name][0]
    probe = folder / f"{name}.version"
    source = shutil.which("busybox") if name == "busybox" else shutil.which("go")
    key = hashlib.sha256(f"{source}:{os.stat(source or '/').st_mtime_ns}".encode()).hexdigest()[:16]
    layer = folder / f"{name}-{key}.tar.gz"
    if not layer.exists():
        print(f">> base image {name}: making its layer from the host's {source}", flush=True)
        data, version = make()
        layer.write_bytes(data)
        probe.write_text(version)
    return layer, probe.read_text()


def seed_base_images(ecr: LocalEcr) -> dict[str, str]:
    """Push base/busybox:e2e and base/golang:e2e into the stand-in's backend; returns name -> version."""
    crane = str(ecr.crane_binary)
    versions = {}
    previous = ""
    for name in ("busybox", "golang"):
        layer, versions[name] = base_layer(name)
        ref = f"{ecr.backend}/base/{name}:e2e"
        command = [crane, "append", "-f", str(layer), "-t", ref, "--insecure"]
        if previous:
            command += ["-b", previous]
        subprocess.run(command, capture_output=True, text=True, check=True, timeout=600)
        subprocess.run(
            [crane, "mutate", ref, "-t", ref, "--set-platform", f"linux/{GOARCH}", *BASES[name][1], "--insecure"],
            capture_output=True, text=True, check=True, timeout=600,
        )  # fmt: skip
        previous = ref
    return versions


# --- the session: the job "image", the credential-helper stand-in ------------------------------------
HELPER = """#!/bin/sh
# STAND-IN for amazon-ecr-credential-helper (no ECR or AWS here): `get` answers the ECR stand-in's
# token of the push identity whose access key the job holds; any other key gets no credentials.
[ "$1" = get ] || { echo "credential helper stand-in: only 'get' is supported" >&2; exit 1; }
read -r server
# oidc: the role and the ID token from AWS_WEB_IDENTITY_TOKEN_FILE, as the SDK's web-identity provider reads them.
token=""
if [ -n "${AWS_WEB_IDENTITY_TOKEN_FILE:-}" ]; then token=$(cat "$AWS_WEB_IDENTITY_TOKEN_FILE"); fi
case "${AWS_ACCESS_KEY_ID:-}:${AWS_SECRET_ACCESS_KEY:-}:${AWS_ROLE_ARN:-}:${token}" in
@CASES@
  *) echo "credentials not found in native keychain" >&2; exit 1 ;;
esac
"""
WGET = """#!/bin/sh
# The credential helper's download from S3 is served from the session folder (stand-in); every other
# call (the template's HEAD existence checks against the registry) is the real wget: GNU's, or BusyBox's
# when the job runs on the image's BusyBox (REAL_WGET).
for last in "$@"; do :; done
case "$last" in
  @BASE@/*)
    file="@S3@/${last#@BASE@/}"
    [ -f "$file" ] || { echo "wget: server returned error: HTTP/1.1 404 Not Found" >&2; exit 8; }
    if [ "$1 $2 $3" = "-q -O -" ]; then cat "$file"; else cp "$file" "$3"; fi ;;
  *) exec "${REAL_WGET:-/usr/bin/wget}" "$@" ;;
esac
"""


@dataclass
class Identity:
    """A project's push identity, as the stack makes it: an access key pair (credentials.mode
    access-key) or a role its GitLab ID token assumes (oidc), and the registry token it gets."""

    access_key_id: str
    secret_access_key: str
    token: str
    role_arn: str = ""
    id_token: str = ""


@dataclass
class JobResult:
    returncode: int
    output: str
    seconds: float
    daemon_peak_kib: int
    leftover: list[str] = field(default_factory=list)
    """Processes of the job still running when its script exited (the harness then kills them)."""
    disk_peak_kib: int = 0
    """Peak disk use of the job folder (HOME with the builder's state, the checkout, run dir): what
    counts against the build container's ephemeral storage in a pod."""

    @property
    def step_lines(self) -> list[str]:
        """BuildKit's progress lines naming a Dockerfile step (`#7 [build 3/5] RUN ...`)."""
        return [line for line in self.output.splitlines() if line.startswith("#") and "] " in line and "[internal]" not in line]


@dataclass
class Pipeline:
    """The predefined CI variables of one pipeline (https://docs.gitlab.com/ci/variables/predefined_variables/)."""

    ref_slug: str = "main"
    sha: str = "1" * 40
    tag: str = ""
    default_branch: str = "main"
    timestamp: str = "2026-11-20T10:15:30+01:00"
    job_id: int = 1

    def variables(self) -> dict[str, str]:
        values = {
            "CI_COMMIT_SHA": self.sha,
            "CI_COMMIT_SHORT_SHA": self.sha[:8],
            "CI_COMMIT_REF_SLUG": self.ref_slug,
            "CI_DEFAULT_BRANCH": self.default_branch,
            "CI_ENVIRONMENT_NAME": "production",
            "CI_PROJECT_ID": "42",
            "CI_JOB_ID": str(self.job_id),
            "CI_SERVER_URL": "https://gitlab.example.com",
        }
        if self.tag:
            values["CI_COMMIT_TAG"] = self.tag
        if self.timestamp:
            values["CI_COMMIT_TIMESTAMP"] = self.timestamp
        return values


@dataclass
class BuildSession:
    """Everything jobs of one test module (or benchmark) share: the user, the job image, the registry."""

    config: StackConfig
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="gbr-builds-")))
    user: BuildUser | None = None
    ecr: LocalEcr | None = None
    identities: dict[str, Identity] = field(default_factory=dict)
    bases: dict[str, str] = field(default_factory=dict)
    _jobs: int = 0

    # --- names, exactly as the stack writes them ------------------------------------------------------
    def repository(self, app: str) -> str:
        return self.config.registry.repository_name(app)

    def project(self, app: str) -> str:
        """The GitLab project that builds `app` (its push identity, variables and cache repository)."""
        return next(a.project_path for a in self.config.registry.applications if a.name == app)

    def cache_repository(self, app: str) -> str:
        return self.config.registry.cache_repository_name(self.project(app))

    def start(self) -> BuildSession:
        """Check the host, start the ECR stand-in, seed base images, assemble the job image; on any
        failure everything started so far is stopped and the session folder removed."""
        try:
            self.user = check_host()
            self.workdir.chmod(0o755)
            tools = ensure(["buildkit", "rootlesskit", "crane"])
            registry = self.config.registry
            self.ecr = LocalEcr(
                self.workdir / "ecr",
                repositories=frozenset(registry.repository_names()),
                immutable=frozenset(registry.repository_name(a) for a in registry.application_names())
                if registry.image_tag_mutability == "IMMUTABLE"
                else frozenset(),
            ).start()
            self.bases = seed_base_images(self.ecr)
            image = self.workdir / "image" / "bin"
            image.mkdir(parents=True)
            for tool, names in (("buildkit", ["buildkitd", "buildctl", "buildctl-daemonless.sh"]), ("rootlesskit", ["rootlesskit"])):
                for name in names:
                    shutil.copy2(tools[tool].binary(name), image / name)
            for project, apps in registry.projects().items():
                identity = Identity(
                    f"AKIA{hashlib.sha256(project.encode()).hexdigest()[:16].upper()}",
                    hashlib.sha256(f"secret:{project}".encode()).hexdigest(),
                    "",
                    f"arn:aws:iam::123456789012:role/gitlab-buildkit-push-prod-{hashlib.sha256(project.encode()).hexdigest()[:8]}",
                    f"eyJhbGciOiJSUzI1NiJ9.{hashlib.sha256(f'id-token:{project}'.encode()).hexdigest()}.signature",
                )
                identity.token = self.ecr.grant({*(registry.repository_name(a) for a in apps), registry.cache_repository_name(project)})
                self.identities[project] = identity
            # newuidmap/newgidmap as the rootless image behaves: the job user keeps its UID (the owner
            # of the user namespace it creates) and holds only CAP_SETUID/CAP_SETGID. Debian's setuid
            # copies write the map as UID 0, which needs CAP_SYS_ADMIN: refused in a pod's container.
            # Setting file capabilities needs root; without it the host's setuid copies serve (from
            # PATH), which work outside a container.
            for tool, capability in (("newuidmap", "cap_setuid=ep"), ("newgidmap", "cap_setgid=ep")) if os.geteuid() == 0 else ():
                shutil.copyfile(f"/usr/bin/{tool}", image / tool)
                (image / tool).chmod(0o755)
                subprocess.run(["setcap", capability, str(image / tool)], check=True, capture_output=True, timeout=30)
            self._write_stand_ins(image)
            for path in (self.workdir / "image").rglob("*"):
                path.chmod(0o755)
            self.ecr.ca.chmod(0o644)
        except BaseException:
            self.stop()
            raise
        return self

    def _write_stand_ins(self, image: Path) -> None:
        assert self.ecr is not None
        s3 = self.workdir / "image" / "s3"
        answer = 'printf \'{{"ServerURL":"%s","Username":"AWS","Secret":"{token}"}}\\n\' "$server" ;;'
        cases = "\n".join(
            f"  '{i.access_key_id}:{i.secret_access_key}::') {answer.format(token=i.token)}\n"
            f"  '::{i.role_arn}:{i.id_token}') {answer.format(token=i.token)}"
            for i in self.identities.values()
        )
        helper = HELPER.replace("@CASES@", cases).encode()
        _, variables = build_job(self.config.registry.application_names()[0])
        folder = s3 / variables["ECR_LOGIN_VERSION"] / f"linux-{GOARCH}"
        folder.mkdir(parents=True)
        (folder / "docker-credential-ecr-login").write_bytes(helper)
        (folder / "docker-credential-ecr-login.sha256").write_text(f"{hashlib.sha256(helper).hexdigest()}  docker-credential-ecr-login\n")
        (image / "wget").write_text(WGET.replace("@BASE@", HELPER_BASE).replace("@S3@", str(s3)))

    def stop(self) -> None:
        if self.ecr is not None:
            self.ecr.stop()
        _remove(self.workdir)

    # --- one job ------------------------------------------------------------------------------------
    def variables(self, app: str, credentials: str = "access-key") -> dict[str, str]:
        """The CI/CD variables the stack writes for the app's project, built by the stack's own functions
        (plus, in oidc mode, the job's ID token, which GitLab adds from the template's `id_tokens`)."""
        assert self.ecr is not None
        registry = self.config.registry
        project = self.project(app)
        identity = self.identities[project]
        specs = shared_variable_specs(region=registry.region, registry_host=self.ecr.host)
        specs += project_variable_specs(
            credentials_mode="oidc" if credentials == "oidc" else "access-key",
            repository_urls={a: f"{self.ecr.host}/{registry.repository_name(a)}" for a in registry.projects()[project]},
            cache_url=f"{self.ecr.host}/{registry.cache_repository_name(project)}",
            access_key_id=identity.access_key_id,
            secret_access_key=identity.secret_access_key,
            role_arn=identity.role_arn,
        )
        if credentials == "oidc":
            specs.append(CiVariable("AWS_ID_TOKEN", identity.id_token))
        return {spec.key: str(spec.value) for spec in specs}

    def new_job(self, source: Path) -> tuple[Path, Path, Path, Path]:
        """A fresh job folder (job, HOME, XDG_RUNTIME_DIR, checkout = a copy of `source`), as a new pod has."""
        self._jobs += 1
        job = self.workdir / f"job-{self._jobs}"
        home, run, checkout = job / "home", job / "run", job / "checkout"
        shutil.copytree(source, checkout, symlinks=True)
        home.mkdir()
        run.mkdir(mode=0o700)
        job.chmod(0o755)
        return job, home, run, checkout

    def hand_over(self, folder: Path) -> None:
        """Give a folder and everything in it to the build user."""
        assert self.user is not None
        for path in (folder, *folder.rglob("*")):
            os.lchown(path, self.user.uid, self.user.gid)

    def run(
        self,
        app: str,
        source: Path,
        pipeline: Pipeline,
        *,
        inputs: dict[str, str] | None = None,
        override: dict[str, str] | None = None,
        timeout: float = 900,
        container: bool = False,
        seccomp: dict[str, Any] | None = None,
        busybox: bool = False,
    ) -> JobResult:
        """Run the template's script for `app` on a copy of `source` (the checkout); returns its log.
        `container`: inside a runc container made like a pod's build container (e2e/confined.py), under
        the `seccomp` profile (None: Unconfined)."""
        assert self.ecr is not None and self.user is not None
        job, home, run, checkout = self.new_job(source)
        (home / ".config" / "buildkit").mkdir(parents=True)
        (home / ".config" / "buildkit" / "buildkitd.toml").write_text(
            # http = false: BuildKit speaks plain HTTP to a localhost registry unless told.
            # Ref: https://github.com/moby/buildkit/blob/v0.25.1/util/resolver/resolver.go (fillInsecureOpts)
            f'[registry."{self.ecr.host}"]\n  http = false\n  ca = ["{self.ecr.ca}"]\n'
        )
        (home / ".wgetrc").write_text(f"ca_certificate = {self.ecr.ca}\n")
        self.hand_over(job)
        script, template_variables = build_job(app, **(inputs or {}))
        image = self.workdir / "image" / "bin"
        # Variables reach the job as the Kubernetes executor delivers them: the public ones (predefined,
        # the job's `variables:`) in the build container's environment; all of them, the project's
        # CI/CD variables included, as `export` lines of the script the runner writes into the pod's
        # scripts volume and runs.
        # Ref: https://gitlab.com/gitlab-org/gitlab-runner/-/blob/main/executors/kubernetes/kubernetes.go
        #      (Env: buildVariables(...GetAllVariables().PublicOrInternal()))
        path = f"{image}:/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"
        shell = "sh"
        extra: dict[str, str] = {}
        if busybox:
            # As in the rootless image: the image's own binaries and BusyBox 1.37's applets, nothing else,
            # so a tool or flag the image lacks fails the job here too.
            applets = busybox_tools.copy_to(self.workdir / "image")  # readable by the job user
            # The image's other binaries (its Dockerfile: runc, and apk's fuse-overlayfs, git, openssh,
            # pigz, shadow-uidmap, xz), as the host has them; after `image`, whose newuidmap/newgidmap
            # copies (with file capabilities, when root) win.
            others = self.workdir / "image" / "apk"
            if not others.exists():
                others.mkdir()
                for tool in ("runc", "fuse-overlayfs", "git", "ssh", "pigz", "xz", "newuidmap", "newgidmap"):
                    found = shutil.which(tool, path="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
                    if found:
                        (others / tool).symlink_to(found)
            path = f"{image}:{others}:{applets}"
            shell = str(applets / "sh")
            extra["REAL_WGET"] = str(applets / "wget")
        public = {
            "PATH": path,
            "HOME": str(home),
            "USER": "user",
            "XDG_RUNTIME_DIR": str(run),
            **pipeline.variables(),
            **template_variables,
            **extra,
        }
        exported = {**public, **self.variables(app, (inputs or {}).get("credentials", "access-key")), **(override or {})}
        scripts = job / f"scripts-42-{self._jobs}"
        scripts.mkdir()
        step_script = scripts / "step_script"
        step_script.write_text("".join(f"export {key}={shlex.quote(value)}\n" for key, value in exported.items()) + script + "\n")
        self.hand_over(scripts)
        if not container:
            return _execute(self, [shell, str(step_script)], public, checkout, job, timeout)
        name = f"gbr-job-{os.getpid()}-{self._jobs}"
        spec = confined.bundle(
            self.workdir,
            name=name,
            args=["sh", str(step_script)],
            env=public,
            cwd=checkout,
            uid=self.user.uid,
            gid=self.user.gid,
            seccomp=seccomp,
        )
        return _execute(
            self,
            confined.runc_command(self.workdir, spec, name),
            {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
            checkout,
            job,
            timeout,
            as_root=True,
        )


def _execute(
    session: BuildSession, command: list[str], environment: dict[str, str], cwd: Path, job: Path, timeout: float, *, as_root: bool = False
) -> JobResult:
    """Run a job's shell as the build user in its own session (or, `as_root`, runc, which switches to
    the user itself); kill whatever it leaves; keep its log."""
    assert session.user is not None
    if os.geteuid() == 0 and not as_root:
        command = [
            shutil.which("setpriv") or "setpriv",
            f"--reuid={session.user.uid}",
            f"--regid={session.user.gid}",
            "--init-groups",
            "--",
            *command,
        ]
    started = time.monotonic()
    leftover: list[str] = []
    with _daemon_memory(job) as peak:
        process = subprocess.Popen(
            command, env=environment, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            output, _ = process.communicate(timeout=timeout)
            leftover = [_command_name(pid) for pid in session_processes(process.pid)]
        except subprocess.TimeoutExpired:
            _kill_session(process.pid)
            output, _ = process.communicate()
            output += f"\n[harness] job timed out after {timeout:.0f}s and was killed\n".encode()
        finally:
            _kill_session(process.pid)
    result = JobResult(process.returncode, output.decode(errors="replace"), time.monotonic() - started, peak[0], leftover, peak[1])
    job.with_suffix(".log").write_text(result.output)
    _remove(job)
    return result


def _disk_kib(folder: Path) -> int:
    total = 0
    for root, dirs, files in os.walk(folder):
        for name in files + dirs:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                continue
    return total // 1024


@contextmanager
def _daemon_memory(job: Path | None = None) -> Iterator[list[int]]:
    """Samples the peak RSS (VmHWM, KiB) of any buildkitd or buildah process while the block runs, and
    (every half second) the disk use of `job` in KiB: [memory, disk]."""
    peak = [0, 0]
    done = threading.Event()

    def sample() -> None:
        ticks = 0
        while not done.wait(0.1):
            ticks += 1
            if job is not None and ticks % 5 == 0:
                peak[1] = max(peak[1], _disk_kib(job))
            for status in Path("/proc").glob("[0-9]*/status"):
                try:
                    text = status.read_text()
                except OSError:
                    continue
                name = text.split("\n", 1)[0].split()[-1]
                if name in ("buildkitd", "buildah"):
                    for line in text.splitlines():
                        if line.startswith("VmHWM:"):
                            peak[0] = max(peak[0], int(line.split()[1]))

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        done.set()
        thread.join()
        if job is not None:  # the state the job leaves behind counts too
            peak[1] = max(peak[1], _disk_kib(job))


def session_processes(sid: int) -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) == sid:  # field 6 of /proc/<pid>/stat: the session id
            pids.append(int(stat.parent.name))
    return pids


def _command_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return f"pid {pid} (gone)"


def _kill_session(sid: int) -> None:
    """Kill every process of the job's session (rootlesskit, buildkitd, runc children), then wait for them."""
    for _ in range(50):
        pids = session_processes(sid)
        if not pids:
            return
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


def _remove(path: Path) -> None:
    """Remove a job folder; files made inside the user namespace belong to subuids, so a non-root user
    removes them from inside one (`unshare --map-auto`)."""
    if not path.exists():
        return
    if os.geteuid() == 0:
        shutil.rmtree(path, ignore_errors=True)
    else:
        subprocess.run(["unshare", "--user", "--map-auto", "--map-root-user", "rm", "-rf", str(path)], check=False)
        shutil.rmtree(path, ignore_errors=True)


# --- fixture applications ----------------------------------------------------------------------------
def _vendor(checkout: Path) -> None:
    """deps-install's vendored archives and lock: deterministic (seeded), ~8 MiB, never committed."""
    import random

    rng = random.Random(20261123)
    words = [f"{rng.choice('abcdefghijklmnop')}{rng.randrange(10**6)}" for _ in range(4000)]
    vendor = checkout / "vendor"
    vendor.mkdir()
    lock = []
    for index in range(12):
        name = f"pkg-{index:02d}"
        entries: list[tuple[str, Path | bytes | None, int, str]] = [(name, None, 0o755, "")]
        for module in range(8):
            body = "\n".join(
                f"export const {rng.choice(words)} = {rng.random()!r}; // {' '.join(rng.choices(words, k=8))}" for _ in range(1400)
            )
            entries.append((f"{name}/m{module}.js", body.encode(), 0o644, ""))
        archive = vendor / f"{name}.tar.gz"
        archive.write_bytes(_tar_layer(entries))
        lock.append(f"{hashlib.sha256(archive.read_bytes()).hexdigest()}  vendor/{name}.tar.gz")
    (checkout / "deps.lock").write_text("\n".join(lock) + "\n")


def checkout(app: str, dest: Path, *, changes: int = 0) -> Path:
    """A working copy of a fixture app at `dest`, with `changes` one-line edits of its change file."""
    if dest.exists():
        shutil.rmtree(dest)
    base = APPS / app
    if (base / "sources-from").exists():  # a Dockerfile variant of another app's sources
        base = APPS / (base / "sources-from").read_text().strip()
        shutil.copytree(base, dest)
        shutil.copyfile(APPS / app / "Dockerfile", dest / "Dockerfile")
    else:
        shutil.copytree(base, dest)
    if app == "deps-install":
        _vendor(dest)
    changed = dest / (base / "change.txt").read_text().strip()
    comment = "//" if changed.suffix == ".go" else "<!--" if changed.suffix == ".html" else "#"
    for change in range(changes):
        with changed.open("a") as out:
            out.write(f"{comment} change {change + 1}{' -->' if comment == '<!--' else ''}\n")
    return dest


def fixture_config(apps: list[str]) -> StackConfig:
    """The shipped prod stack's registry settings (prefix, IMMUTABLE, cache naming) with the fixture apps."""
    from components.config import parse_config
    from verify.harness import load_stack_file

    raw = load_stack_file("prod")
    raw["registry"] = {**raw["registry"], "applications": [{"name": a, "projectPath": f"acme/{a}"} for a in apps]}
    return parse_config(raw, "prod")


# --- the benchmark's peer: Buildah, rootless, `--layers` with a registry cache ----------------------
BUILDAH_SCRIPT = """set -eu
# Buildah's nearest equivalent of the template: layer cache in the registry (--cache-from/--cache-to
# take a repository; cache images are tagged by layer cache key, so every ref shares one cache and a
# new branch finds the default branch's layers), the same two tags, the same reproducibility inputs.
image="${ECR_REPOSITORY}"
buildah build --layers --cache-from "$CACHE_REPOSITORY" --cache-to "$CACHE_REPOSITORY" \\
  --cert-dir "$CERT_DIR" --timestamp "$SOURCE_DATE_EPOCH" --build-arg "BASE=$BASE" \\
  --build-arg "SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH" -f Dockerfile -t "$image:$CI_COMMIT_SHA" .
buildah push --cert-dir "$CERT_DIR" "$image:$CI_COMMIT_SHA" "docker://$image:$CI_COMMIT_SHA"
buildah push --cert-dir "$CERT_DIR" "$image:$CI_COMMIT_SHA" "docker://$image:${CI_COMMIT_REF_SLUG}-${CI_COMMIT_SHORT_SHA}"
echo "Pushed $image:$CI_COMMIT_SHA"
"""


def run_buildah(session: BuildSession, app: str, source: Path, pipeline: Pipeline, *, timeout: float = 900) -> JobResult:
    """The Buildah peer of `BuildSession.run`: same user, registry, token, fresh storage per job."""
    import base64
    import datetime
    import json

    assert session.ecr is not None and session.user is not None
    variables = session.variables(app)
    token = session.identities[session.project(app)].token
    job, home, run, checkout_dir = session.new_job(source)
    certs = job / "certs"
    (home / ".config" / "containers").mkdir(parents=True)
    (home / ".config" / "containers" / "storage.conf").write_text('[storage]\ndriver = "overlay"\n')
    auth = base64.b64encode(f"AWS:{token}".encode()).decode()
    (home / "auth.json").write_text(json.dumps({"auths": {session.ecr.host: {"auth": auth}}}))
    certs.mkdir()
    shutil.copy(session.ecr.ca, certs / "ca.crt")
    session.hand_over(job)
    # The template's SOURCE_DATE_EPOCH: the commit time (the pipeline's, or the default one).
    epoch = int(datetime.datetime.fromisoformat(pipeline.timestamp or Pipeline.timestamp).timestamp())
    environment = {
        "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin",
        "HOME": str(home),
        "USER": "user",
        "XDG_RUNTIME_DIR": str(run),
        "REGISTRY_AUTH_FILE": str(home / "auth.json"),
        "CERT_DIR": str(certs),
        "BASE": session.ecr.host,
        "ECR_REPOSITORY": variables[next(k for k in variables if k.startswith("ECR_REPOSITORY_"))],
        "CACHE_REPOSITORY": variables["BUILDKIT_CACHE_REPOSITORY"],
        "SOURCE_DATE_EPOCH": str(epoch),
        **pipeline.variables(),
    }
    return _execute(session, ["sh", "-c", BUILDAH_SCRIPT], environment, checkout_dir, job, timeout)
