"""A project's warm BuildKit daemon, real: `rootlesskit buildkitd` as the build user, long-lived, on
127.0.0.1 with mTLS, its certificates from the stack's own generator (components/builder_certificates),
its flags from the stack's own builder (components/warm_builder: no process sandbox, garbage collection).

What differs from the stack's StatefulSet: a host process under `setpriv`, not a pod (the pod spec is
checked by the pack and kubernetes-validate in `make test`); the state lives in a folder, not a
volume; the address is tcp://localhost:<port> (the stack's is the Service's DNS name). The registry's
CA is trusted through the daemon's ~/.config/buildkit/buildkitd.toml, as the jobs' own daemons here.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from components.builder_certificates import issue
from components.config import WarmBuilderConfig
from components.warm_builder import gc_flags

from .build_job import BuildSession, _kill_session, session_processes


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class WarmDaemon:
    session: BuildSession
    project_key: str
    warm: WarmBuilderConfig = field(default_factory=WarmBuilderConfig)
    port: int = field(default_factory=free_port)
    certs: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @property
    def folder(self) -> Path:
        return self.session.workdir / f"warm-{self.project_key}"

    @property
    def state(self) -> Path:
        return self.folder / "home" / ".local" / "share" / "buildkit"

    @property
    def socket(self) -> str:
        return f"unix://{self.folder / 'run' / 'buildkitd.sock'}"

    def variables(self, certs: dict[str, str] | None = None) -> dict[str, str]:
        """The CI/CD variables the stack writes for the project (of these certificates: another project's, say)."""
        certs = certs or self.certs

        def b64(text: str) -> str:
            return base64.b64encode(text.encode()).decode()

        return {
            "BUILDKIT_HOST": f"tcp://localhost:{self.port}",
            "BUILDKIT_TLS_CA_B64": b64(certs["caPem"]),
            "BUILDKIT_TLS_CERT_B64": b64(certs["clientCertPem"]),
            "BUILDKIT_TLS_KEY_B64": b64(certs["clientKeyPem"]),
        }

    def _environment(self) -> dict[str, str]:
        image = self.session.workdir / "image" / "bin"
        return {
            "PATH": f"{image}:/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin",
            "HOME": str(self.folder / "home"),
            "USER": "user",
            "XDG_RUNTIME_DIR": str(self.folder / "run"),
        }

    def _as_user(self, command: list[str]) -> list[str]:
        user = self.session.user
        assert user is not None
        if os.geteuid() != 0:
            return command
        return [shutil.which("setpriv") or "setpriv", f"--reuid={user.uid}", f"--regid={user.gid}", "--init-groups", "--", *command]

    def start(self) -> WarmDaemon:
        assert self.session.ecr is not None and self.session.user is not None
        if not self.certs:
            self.certs = issue({"project": self.project_key, "serverNames": ["localhost"], "validityDays": 30, "renewBeforeDays": 7})
        tls = self.folder / "tls"
        for folder in (self.folder, self.folder / "home" / ".config" / "buildkit", self.folder / "run", tls):
            folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "run").chmod(0o700)
        for name, key in (("ca.pem", "caPem"), ("cert.pem", "serverCertPem"), ("key.pem", "serverKeyPem")):
            (tls / name).write_text(self.certs[key])
            (tls / name).chmod(0o600)
        ecr = self.session.ecr
        (self.folder / "home" / ".config" / "buildkit" / "buildkitd.toml").write_text(
            f'[registry."{ecr.host}"]\n  http = false\n  ca = ["{ecr.ca}"]\n'
        )
        self.session.hand_over(self.folder)
        args = [
            "rootlesskit",
            "buildkitd",
            "--addr",
            self.socket,
            "--addr",
            f"tcp://127.0.0.1:{self.port}",
            "--tlscacert",
            str(tls / "ca.pem"),
            "--tlscert",
            str(tls / "cert.pem"),
            "--tlskey",
            str(tls / "key.pem"),
            "--oci-worker-no-process-sandbox",
            *gc_flags(self.warm),
        ]
        log = open(self.folder.with_suffix(".log"), "ab")  # noqa: SIM115  (closed with the process)
        self.process = subprocess.Popen(self._as_user(args), env=self._environment(), stdout=log, stderr=log, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"buildkitd exited ({self.process.returncode}): {self.folder.with_suffix('.log').read_text()[-1500:]}")
            if self.buildctl("debug", "workers").returncode == 0:
                return self
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"buildkitd did not answer within 90 s: {self.folder.with_suffix('.log').read_text()[-1500:]}")

    def buildctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        """buildctl over the daemon's own socket, as the daemon's user (not through mTLS)."""
        return subprocess.run(
            self._as_user(["buildctl", "--addr", self.socket, *args]), env=self._environment(), capture_output=True, text=True, timeout=120
        )

    def used_bytes(self) -> int:
        """The sum of `buildctl du`'s records (what its 'Total' line prints)."""
        out = self.buildctl("du", "--format", "{{range .}}{{.Size}} {{end}}")
        if out.returncode == 0 and out.stdout.strip():
            return sum(int(line) for line in out.stdout.split() if line.isdigit())
        raise RuntimeError(f"buildctl du failed: {out.stderr[-500:]}")

    def stop(self) -> None:
        if self.process is not None:
            for pid in [self.process.pid, *session_processes(self.process.pid)]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=20)
            _kill_session(self.process.pid)
            self.process = None

    def wipe(self) -> None:
        """Lose the state, as a daemon whose volume was replaced (stopped first)."""
        self.stop()
        subprocess.run(["rm", "-rf", str(self.state)], check=True)
