"""An ECR stand-in on 127.0.0.1 for real builds: a real OCI registry behind a small front that does
what the template meets at ECR and a plain registry does not.

- Backend: go-containerregistry's registry (`crane registry serve`, pinned in e2e/tools.toml), plain
  HTTP on 127.0.0.1, blobs on disk. It stores and serves what BuildKit and Buildah push.
- Front (this module): HTTPS with a CA of its own (ECR is HTTPS only; the template's existence check
  uses `https://`), Basic auth with the token the credential-helper stand-in hands out (ECR's
  `docker-credential-ecr-login` answers `AWS:<token>`), and the repository rules ECR enforces that the
  backend has no notion of, **modelled here and named as a model**:
    * only the repositories the stack creates accept pushes (ECR: `NAME_UNKNOWN`, repository does not exist);
    * an IMMUTABLE repository refuses to overwrite an existing tag, even with the same manifest
      (ECR answers 400 `TAG_INVALID`, "... cannot be overwritten because the repository is immutable";
      aws/containers-roadmap#2179);
    * a token may push only to the repositories it was issued for (IAM on the push identity; 403 DENIED).
- Accounting for the benchmark: bytes received per repository, and every manifest PUT (tag, digest).

Nothing here listens beyond 127.0.0.1; `stop()` ends the backend and the front even after a failure.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import secrets
import ssl
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TextIO

from .certs import issue_certificates
from .cluster import free_port
from .tools import ensure

MANIFEST = re.compile(r"^/v2/(?P<name>.+)/manifests/(?P<reference>[^/]+)$")
UPLOAD = re.compile(r"^/v2/(?P<name>.+)/blobs/uploads/")
BLOB = re.compile(r"^/v2/(?P<name>.+)/blobs/")
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "host", "authorization", "te", "upgrade", "proxy-authorization"}


class EcrError(RuntimeError):
    """The stand-in could not start; the message carries the backend's log tail."""


@dataclass(frozen=True)
class Grant:
    """What one registry token may push to (IAM on the push identity); every token may pull."""

    token: str
    repositories: frozenset[str]


@dataclass
class ManifestPut:
    repository: str
    reference: str
    digest: str
    status: int


@dataclass
class Ledger:
    """What the front saw, for assertions and the benchmark. Guarded by `lock`."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    bytes_in: dict[str, int] = field(default_factory=dict)
    manifest_puts: list[ManifestPut] = field(default_factory=list)
    refused: list[tuple[str, str, int]] = field(default_factory=list)

    def add_bytes(self, repository: str, count: int) -> None:
        with self.lock:
            self.bytes_in[repository] = self.bytes_in.get(repository, 0) + count

    def reset(self) -> None:
        with self.lock:
            self.bytes_in.clear()
            self.manifest_puts.clear()
            self.refused.clear()


class _Front(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _FrontServer

    def log_message(self, format: str, *args: object) -> None:
        self.server.access_log.write(f"{self.address_string()} {format % args}\n")

    # --- helpers -----------------------------------------------------------------------------------
    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _error(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        body = json.dumps({"errors": [{"code": code, "message": message, "detail": None}]}).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _grant(self) -> Grant | None:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return None
        try:
            user, _, token = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except ValueError:
            return None
        grant = self.server.grants.get(token)
        return grant if user == "AWS" and grant is not None else None

    def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], http.client.HTTPResponse, http.client.HTTPConnection]:
        connection = http.client.HTTPConnection("127.0.0.1", self.server.backend_port, timeout=300)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        if self.command in ("PUT", "POST", "PATCH") or body:
            headers["Content-Length"] = str(len(body))
        connection.request(self.command, self.path, body=body or None, headers=headers)
        response = connection.getresponse()
        return response.status, response.getheaders(), response, connection

    # --- the registry API ----------------------------------------------------------------------------
    def _handle(self) -> None:
        body = self._body() if self.command in ("PUT", "POST", "PATCH") else b""
        grant = self._grant()
        if grant is None:
            # ECR: every /v2/ request needs the token from GetAuthorizationToken (Basic auth).
            self._error(
                401,
                "DENIED",
                "Not Authorized",
                {"WWW-Authenticate": f'Basic realm="https://{self.server.host}/",service="ecr.amazonaws.com"'},
            )
            return
        path = self.path.split("?", 1)[0]
        writing = self.command in ("PUT", "POST", "PATCH", "DELETE")
        match = MANIFEST.match(path) or BLOB.match(path)
        repository = match.group("name") if match else ""
        if writing and repository:
            if repository not in self.server.repositories:
                self._refuse(repository, 404, "NAME_UNKNOWN", f"The repository with name '{repository}' does not exist in the registry")
                return
            if repository not in grant.repositories:
                self._refuse(
                    repository,
                    403,
                    "DENIED",
                    f"User is not authorized to perform: ecr:InitiateLayerUpload on resource: repository/{repository}",
                )
                return
        manifest = MANIFEST.match(path)
        if self.command == "PUT" and manifest and not manifest.group("reference").startswith("sha256:"):
            tag = manifest.group("reference")
            if repository in self.server.immutable and self._tag_exists(repository, tag):
                self._refuse(
                    repository,
                    400,
                    "TAG_INVALID",
                    f"The image tag '{tag}' already exists in the '{repository}' repository and cannot be overwritten because the repository is immutable.",
                )
                return
        if writing and repository:
            self.server.ledger.add_bytes(repository, len(body))
        status, headers, response, connection = self._forward(body)
        try:
            if self.command == "PUT" and manifest:
                digest = dict((k.lower(), v) for k, v in headers).get("docker-content-digest", "")
                with self.server.ledger.lock:
                    self.server.ledger.manifest_puts.append(ManifestPut(repository, manifest.group("reference"), digest, status))
            self.send_response(status)
            length = None
            for name, value in headers:
                lower = name.lower()
                if lower in HOP_BY_HOP:
                    continue
                if lower == "content-length":
                    length = int(value)
                if lower == "location" and value.startswith(f"http://127.0.0.1:{self.server.backend_port}"):
                    value = value.replace(f"http://127.0.0.1:{self.server.backend_port}", f"https://{self.server.host}", 1)
                self.send_header(name, value)
            if self.command == "HEAD":
                self.end_headers()
                return
            if length is None:
                data = response.read()
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            self.end_headers()
            while chunk := response.read(1 << 20):
                self.wfile.write(chunk)
        finally:
            connection.close()

    def _tag_exists(self, repository: str, tag: str) -> bool:
        connection = http.client.HTTPConnection("127.0.0.1", self.server.backend_port, timeout=30)
        try:
            connection.request("HEAD", f"/v2/{repository}/manifests/{tag}", headers={"Accept": ", ".join(self.server.manifest_types)})
            return connection.getresponse().status == 200
        finally:
            connection.close()

    def _refuse(self, repository: str, status: int, code: str, message: str) -> None:
        with self.server.ledger.lock:
            self.server.ledger.refused.append((repository, code, status))
        self._error(status, code, message)

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _handle


class _FrontServer(ThreadingHTTPServer):
    daemon_threads = True
    backend_port: int
    host: str
    grants: dict[str, Grant]
    repositories: frozenset[str]
    immutable: frozenset[str]
    ledger: Ledger
    access_log: TextIO
    manifest_types = (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )


@dataclass
class LocalEcr:
    """`with LocalEcr(workdir, repositories=..., immutable=...) as ecr:` -> ecr.host, ecr.ca, ecr.grant(...)."""

    workdir: Path
    repositories: frozenset[str]
    immutable: frozenset[str]
    host: str = ""
    ca: Path = Path()
    ledger: Ledger = field(default_factory=Ledger)
    backend_port: int = 0
    crane_binary: Path = Path()
    """The pinned crane (e2e/tools.toml), resolved once by start()."""
    _backend: subprocess.Popen[bytes] | None = None
    _server: _FrontServer | None = None
    _thread: threading.Thread | None = None
    _grants: dict[str, Grant] = field(default_factory=dict)

    def __enter__(self) -> LocalEcr:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> LocalEcr:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.crane_binary = ensure(["crane"])["crane"].binary("crane")
        blobs = self.workdir / "blobs"
        blobs.mkdir(exist_ok=True)
        self.backend_port = free_port()
        with (self.workdir / "registry.log").open("wb") as log:  # the child keeps its own descriptor
            self._backend = subprocess.Popen(
                [str(self.crane_binary), "registry", "serve", "--address", f"127.0.0.1:{self.backend_port}", "--disk", str(blobs)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_backend()
            self.ca, cert, key = issue_certificates(self.workdir, "gitlab-buildkit-runner e2e ECR stand-in CA")
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert, key)
            server = _FrontServer(("127.0.0.1", 0), _Front)
            server.socket = context.wrap_socket(server.socket, server_side=True)
            server.backend_port = self.backend_port
            server.host = self.host = f"127.0.0.1:{server.server_address[1]}"
            server.grants = self._grants
            server.repositories = frozenset(self.repositories)
            server.immutable = frozenset(self.immutable)
            server.ledger = self.ledger
            server.access_log = (self.workdir / "front-access.log").open("a", buffering=1)
            self._server = server
            self._thread = threading.Thread(target=server.serve_forever, name="ecr-front", daemon=True)
            self._thread.start()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_backend(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._backend is not None and self._backend.poll() is not None:
                break
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.backend_port}/v2/", timeout=2):
                    return
            except OSError:
                time.sleep(0.1)
        tail = (self.workdir / "registry.log").read_text(errors="replace")[-2000:]
        raise EcrError(f"the local registry (crane registry serve) did not answer on 127.0.0.1:{self.backend_port}:\n{tail}")

    def grant(self, repositories: set[str] | frozenset[str]) -> str:
        """A registry token that may push to these repositories (and pull from all); what the helper hands out."""
        token = secrets.token_urlsafe(24)
        self._grants[token] = Grant(token, frozenset(repositories))
        return token

    @property
    def backend(self) -> str:
        """The backend's plain-HTTP address, for seeding base images and for inspection with crane."""
        return f"127.0.0.1:{self.backend_port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server.access_log.close()
            self._server = None
        if self._backend is not None:
            self._backend.terminate()
            try:
                self._backend.wait(10)
            except subprocess.TimeoutExpired:
                self._backend.kill()
                self._backend.wait(10)
            self._backend = None

    # --- inspection (through the backend, as an operator with `aws ecr describe-images` would) --------
    def crane(self, *args: str) -> str:
        result = subprocess.run([str(self.crane_binary), *args, "--insecure"], capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise EcrError(f"crane {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    def tags(self, repository: str) -> set[str]:
        try:
            return set(self.crane("ls", f"{self.backend}/{repository}").split())
        except EcrError as exc:
            if "NAME_UNKNOWN" in str(exc):
                return set()
            raise

    def digest(self, repository: str, tag: str) -> str:
        return self.crane("digest", f"{self.backend}/{repository}:{tag}").strip()

    def manifest(self, repository: str, reference: str) -> dict[str, object]:
        return dict(json.loads(self.crane("manifest", f"{self.backend}/{repository}:{reference}")))
