"""A real Kubernetes control plane on 127.0.0.1 for tests: etcd, kube-apiserver (with the admission
plugins a cluster runs: NamespaceLifecycle, LimitRanger, ServiceAccount, PodSecurity, ResourceQuota)
and kube-controller-manager (quota, namespace, Deployment, ReplicaSet and garbage-collector
controllers). No kubelet: without nodes, pods are admitted and stay Pending, which is what admission,
LimitRange defaulting and quota accounting need. With `nodes`, kube-scheduler binds pods to fake
nodes that kwok runs (Running and Ready, no containers), so a Helm release can wait for its
Deployment as on a real cluster.

Started and stopped by the tests (a pytest fixture); every process is stopped, and its port freed,
even when a test fails. Logs go to build/e2e/<run>/ and their tail is shown when startup fails.
"""

from __future__ import annotations

import json
import secrets
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .tools import Tool, ensure

ADMISSION = "NamespaceLifecycle,LimitRanger,ServiceAccount,PodSecurity,ResourceQuota"
# The annotation kwok manages nodes by (its documented selector).
KWOK_NODE = "kwok.x-k8s.io/node"


class ClusterError(RuntimeError):
    """The control plane did not come up; the message carries the log tail."""


class ApiError(RuntimeError):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"{status}: {body.get('message', body)}")
        self.status = status
        self.body = body


def stop_processes(processes: list[tuple[str, subprocess.Popen[bytes]]], grace: float) -> None:
    """SIGTERM to every process, newest first; SIGKILL to any still running after `grace` seconds."""
    for _, process in reversed(processes):
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for _, process in reversed(processes):
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        if process.stdout:
            process.stdout.close()
    processes.clear()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LocalCluster:
    workdir: Path
    processes: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    url: str = ""
    token: str = field(default_factory=lambda: secrets.token_hex(16))
    # Fake nodes (name -> labels) that kube-scheduler and kwok make schedulable; none: pods stay Pending.
    nodes: dict[str, dict[str, str]] = field(default_factory=dict)

    def _start(self, name: str, command: list[str]) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("wb")
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir, start_new_session=True)
        self.processes.append((name, process))
        return process

    def _tail(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-20:]) if path.exists() else "(no log)"

    def start(self) -> LocalCluster:
        self.workdir.mkdir(parents=True, exist_ok=True)
        tools = ensure(["etcd", "kubernetes", *(["kwok"] if self.nodes else [])])
        etcd, kube = tools["etcd"], tools["kubernetes"]
        client, peer, api = free_port(), free_port(), free_port()
        self._start(
            "etcd",
            [
                str(etcd.binary("etcd")),
                "--data-dir", str(self.workdir / "etcd"),
                "--listen-client-urls", f"http://127.0.0.1:{client}",
                "--advertise-client-urls", f"http://127.0.0.1:{client}",
                "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-cluster", f"default=http://127.0.0.1:{peer}",
                "--listen-metrics-urls", "",
            ],
        )  # fmt: skip
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        (self.workdir / "sa.key").write_bytes(
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )
        (self.workdir / "sa.pub").write_bytes(
            key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
        (self.workdir / "tokens.csv").write_text(f'{self.token},admin,admin,"system:masters"\n')
        self._start(
            "kube-apiserver",
            [
                str(kube.binary("kube-apiserver")),
                "--etcd-servers", f"http://127.0.0.1:{client}",
                "--bind-address", "127.0.0.1",
                "--advertise-address", "127.0.0.1",
                "--secure-port", str(api),
                "--cert-dir", str(self.workdir / "certs"),
                "--token-auth-file", str(self.workdir / "tokens.csv"),
                "--authorization-mode", "RBAC",
                "--enable-admission-plugins", ADMISSION,
                "--service-account-issuer", "https://kubernetes.default.svc",
                "--service-account-key-file", str(self.workdir / "sa.pub"),
                "--service-account-signing-key-file", str(self.workdir / "sa.key"),
                "--service-cluster-ip-range", "10.96.0.0/16",
            ],
        )  # fmt: skip
        self.url = f"https://127.0.0.1:{api}"
        self._wait_ready("kube-apiserver", "/readyz", 120)
        kubeconfig = self.write_kubeconfig(self.workdir / "kubeconfig")
        self._start(
            "kube-controller-manager",
            [
                str(kube.binary("kube-controller-manager")),
                "--kubeconfig", str(kubeconfig),
                "--controllers", "resourcequota,namespace,serviceaccount,deployment,replicaset,garbagecollector",
                "--leader-elect=false",
                "--bind-address", "127.0.0.1",
                "--secure-port", str(free_port()),
                "--use-service-account-credentials=false",
            ],
        )  # fmt: skip
        if self.nodes:
            self._start_nodes(tools["kwok"], kube, kubeconfig)
        return self

    def _start_nodes(self, kwok: Tool, kube: Tool, kubeconfig: Path) -> None:
        self._start(
            "kube-scheduler",
            [
                str(kube.binary("kube-scheduler")),
                "--kubeconfig", str(kubeconfig),
                "--leader-elect=false",
                "--bind-address", "127.0.0.1",
                "--secure-port", str(free_port()),
            ],
        )  # fmt: skip
        stages = self.workdir / "kwok-stages.yaml"
        stages.write_text("\n---\n".join(kwok.binary(f).read_text() for f in kwok.spec["files"]))
        self._start(
            "kwok",
            [
                str(kwok.binary("kwok")),
                "--kubeconfig", str(kubeconfig),
                "--config", str(stages),
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector", f"{KWOK_NODE}=fake",
                "--server-address", f"127.0.0.1:{free_port()}",
                "--node-ip", "127.0.0.1",
                "--cidr", "10.244.0.0/16",
            ],
        )  # fmt: skip
        for name, labels in self.nodes.items():
            self.create(
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **labels}, "annotations": {KWOK_NODE: "fake"}},
                    "status": {"capacity": {"cpu": "32", "memory": "128Gi", "ephemeral-storage": "1Ti", "pods": "110"}},
                }
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            items = self.request("GET", "/api/v1/nodes").get("items", [])
            ready = [
                n for n in items if any(c["type"] == "Ready" and c["status"] == "True" for c in n.get("status", {}).get("conditions", []))
            ]
            if len(ready) == len(self.nodes):
                # The apiserver's NodeTaint admission registers every node with the not-ready taint, and
                # only the node-lifecycle controller (not run here: it would evict on kwok's heartbeat
                # gaps) takes it off once the node is Ready: taken off here instead.
                for node in ready:
                    node["spec"]["taints"] = [t for t in node["spec"].get("taints", []) if t["key"] != "node.kubernetes.io/not-ready"]
                    self.request("PUT", f"/api/v1/nodes/{node['metadata']['name']}", node)
                return
            time.sleep(0.5)
        raise ClusterError(f"kwok did not make the nodes Ready in 60s:\n{self._tail('kwok')}")

    def write_kubeconfig(self, path: Path, context: str = "e2e") -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": context, "cluster": {"server": self.url, "insecure-skip-tls-verify": True}}],
            "users": [{"name": "admin", "user": {"token": self.token}}],
            "contexts": [{"name": context, "context": {"cluster": context, "user": "admin"}}],
            "current-context": context,
        }
        path.write_text(json.dumps(config))
        return path

    def _wait_ready(self, name: str, path: str, seconds: int) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for proc_name, process in self.processes:
                if process.poll() is not None:
                    raise ClusterError(f"{proc_name} exited with {process.returncode}:\n{self._tail(proc_name)}")
            try:
                self.request("GET", path)
                return
            except (OSError, ApiError):
                time.sleep(0.5)
        raise ClusterError(f"{name} not ready after {seconds}s:\n{self._tail(name)}")

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the apiserver's own self-signed serving cert, on 127.0.0.1
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, context=context, timeout=30) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as exc:
            text = exc.read().decode()
            try:
                payload = json.loads(text)
            except json.JSONDecodeError:
                payload = {"message": text}
            raise ApiError(exc.code, payload) from None
        return json.loads(text) if text.strip().startswith("{") else {"text": text}

    def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        return self.request("POST", collection_path(manifest), manifest)

    def get(self, manifest: dict[str, Any]) -> dict[str, Any]:
        return self.request("GET", collection_path(manifest) + "/" + manifest["metadata"]["name"])

    def stop(self) -> None:
        stop_processes(self.processes, grace=20)


PLURALS = {
    "LimitRange": "limitranges",
    "NetworkPolicy": "networkpolicies",
    "ResourceQuota": "resourcequotas",
    "PriorityClass": "priorityclasses",
}


def collection_path(manifest: dict[str, Any]) -> str:
    api_version, kind = manifest["apiVersion"], manifest["kind"]
    plural = PLURALS.get(kind, kind.lower() + "s")
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    namespace = (manifest.get("metadata") or {}).get("namespace")
    return f"{base}/namespaces/{namespace}/{plural}" if namespace and kind != "Namespace" else f"{base}/{plural}"


def tool_versions() -> dict[str, Tool]:
    return ensure(["etcd", "kubernetes"])
