"""The warm builder of one application project (builders.mode 'warm'): a long-lived rootless buildkitd
that only that project's build jobs can use.

- StatefulSet of one in the stack's builders namespace (the job namespace's PSA level and job security
  marks; the jobs' node selector and PriorityClass), the job image (rootless BuildKit, pinned), the
  build container's own security context and profiles for the job security mode, a persistent volume for its state,
  BuildKit's garbage collection below the volume's size (--oci-worker-gc-keepstorage), explicit resources.
- mTLS: the daemon listens on TCP 1234 only with --tlscacert/--tlscert/--tlskey; its CA is the
  project's own (components/builder_certificates.py), so only that project's client certificate passes
  the handshake; the client certificate reaches the project's jobs as masked, hidden, protected CI/CD
  variables (base64: masked values must be one line).
- A headless Service (no cluster IP, no node port) gives it a DNS name. In the builders namespace the
  daemons get no ingress but this: pods of the job namespace, on 1234; their egress is the jobs'
  (DNS, the allow-list minus metadata, API server and private ranges). The job namespace gets one egress
  rule more: to the builders namespace's daemons on 1234 (the jobs' allow-list excludes private addresses).
Nothing is shared between projects: daemon, volume, certificates, Service and policies are per project.
Ref: https://github.com/moby/buildkit/blob/v0.25.1/examples/kubernetes/statefulset.rootless.yaml
Ref: https://github.com/moby/buildkit/blob/v0.25.1/cmd/buildkitd/util.go (stringToGCConfig: reserved,free,max in MB)
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import pulumi
import pulumi_kubernetes as k8s

from .builder_certificates import BuilderCertificates
from .config import NetworkConfig, RunnerConfig, WarmBuilderConfig
from .marks import BUILDERS_FOR_ANNOTATION, MANAGED_BY, bounded_name, component_type, job_priority_class_name
from .namespace_documents import job_namespace_annotations, job_namespace_labels
from .network_documents import builder_network_policies
from .runner_config import BUILDKIT_STATE_DIR, BUILDKIT_UID

PORT = 1234
CONTAINER = "buildkitd"
APP_LABEL = "app.kubernetes.io/name"
PROJECT_LABEL = "gitlab-buildkit-runner/project"  # one project per daemon: the pack checks every piece carries one
CERTS_DIR = "/etc/buildkit/certs"
SOCKET = f"unix:///run/user/{BUILDKIT_UID}/buildkit/buildkitd.sock"
LOADED_CERT = "/home/user/.buildkitd-loaded-cert.pem"


def daemon_name(project_key: str) -> str:
    """StatefulSet pod names add "-0" within a DNS label's 63 characters (and controller-revision hashes): 52."""
    return bounded_name("buildkitd", project_key, 52)


def project_label(project_key: str) -> str:
    return bounded_name("", project_key, 63)  # a label value's limit


def server_names(project_key: str, namespace: str) -> list[str]:
    name = daemon_name(project_key)
    return [f"{name}.{namespace}.svc", f"{name}.{namespace}", name, f"{name}.{namespace}.svc.cluster.local"]


def address(project_key: str, namespace: str) -> str:
    return f"tcp://{server_names(project_key, namespace)[0]}:{PORT}"


def gc_flags(warm: WarmBuilderConfig) -> list[str]:
    """BuildKit's garbage collection keeps the state under maxUsedSpace ("reserved,free,max", in MB of 10^6 bytes)."""
    max_used = warm.max_used_bytes()
    reserved, free = max_used // 10, max(max_used // 10, 10**9)
    return ["--oci-worker-gc", f"--oci-worker-gc-keepstorage={reserved // 10**6},{free // 10**6},{max_used // 10**6}"]


def container_security_context(runner: RunnerConfig) -> dict[str, Any]:
    """The job build container's context (runner_config.build_container_security_context) and the profiles
    the job security mode gives it: none in 'baseline', the stack's Localhost ones in 'confined',
    Unconfined in 'unconfined' (as the runner's pod_spec patches do for build containers)."""
    context: dict[str, Any] = {
        "privileged": False,
        # rootlesskit calls setuid newuidmap (moby/buildkit#1671), as in the job's build container
        "allowPrivilegeEscalation": True,
        "runAsNonRoot": True,
        "runAsUser": BUILDKIT_UID,
        "runAsGroup": BUILDKIT_UID,
        "capabilities": {"drop": ["NET_RAW"]},
    }
    if runner.job_security_mode == "unconfined":
        context["seccompProfile"] = {"type": "Unconfined"}
        context["appArmorProfile"] = {"type": "Unconfined"}
    confined = runner.confined_profile_names()
    if confined is not None:
        context["seccompProfile"] = {"type": "Localhost", "localhostProfile": confined.seccomp}
        if confined.apparmor is not None:
            context["appArmorProfile"] = {"type": "Localhost", "localhostProfile": confined.apparmor}
    return context


def b64(value: pulumi.Input[str]) -> pulumi.Output[str]:
    return pulumi.Output.from_input(value).apply(lambda text: base64.b64encode(text.encode()).decode())


def daemon_labels(project_key: str) -> dict[str, str]:
    return {
        **MANAGED_BY,
        APP_LABEL: CONTAINER,
        "app.kubernetes.io/instance": daemon_name(project_key),
        PROJECT_LABEL: project_label(project_key),
    }


def daemon_selector(project_key: str) -> dict[str, str]:
    return {APP_LABEL: CONTAINER, "app.kubernetes.io/instance": daemon_name(project_key)}


@dataclass(frozen=True)
class WarmBuildersArgs:
    runner: RunnerConfig
    warm: WarmBuilderConfig
    network: NetworkConfig
    pod_security_version: str
    job_namespace: str
    kubernetes_provider: pulumi.ProviderResource
    depends_on: Sequence[pulumi.Resource] = ()


class WarmBuilders(pulumi.ComponentResource):
    """The stack's builders namespace, its service account and network policies (per stack, no daemon)."""

    namespace: str
    service_account: str

    def __init__(self, name: str, args: WarmBuildersArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(component_type("builders", "WarmBuilders"), name, None, opts)
        self.namespace = args.warm.namespace
        self.service_account = "buildkitd"
        on_k8s = pulumi.ResourceOptions(parent=self, provider=args.kubernetes_provider, depends_on=list(args.depends_on))
        namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata={
                "name": self.namespace,
                # The job namespace's PSA level and job security marks: the daemons get exactly what the build
                # containers get (the pack compares the two namespaces).
                "labels": job_namespace_labels(args.runner.job_security_mode, args.pod_security_version),
                "annotations": {
                    **job_namespace_annotations(args.runner.job_security_mode, args.runner.confined_profile_names()),
                    # The pack reads this mark: whose jobs may reach the daemons here.
                    BUILDERS_FOR_ANNOTATION: args.job_namespace,
                },
            },
            opts=on_k8s,
        )
        in_namespace = pulumi.ResourceOptions(parent=self, provider=args.kubernetes_provider, depends_on=[namespace])
        k8s.core.v1.ServiceAccount(
            f"{name}-account",
            metadata={"name": self.service_account, "namespace": self.namespace, "labels": MANAGED_BY},
            automount_service_account_token=False,
            opts=in_namespace,
        )
        policies = builder_network_policies(
            args.network,
            builders_namespace=self.namespace,
            job_namespace=args.job_namespace,
            port=PORT,
            daemon_labels={APP_LABEL: CONTAINER},
        )
        # Only with network isolation on: an egress policy in the job namespace would otherwise turn the
        # jobs' open egress into "nothing but the daemons".
        for policy_name, (policy_namespace, spec) in (policies if args.network.enabled else {}).items():
            k8s.networking.v1.NetworkPolicy(
                f"{name}-{policy_name}",
                metadata={"name": policy_name, "namespace": policy_namespace, "labels": MANAGED_BY},
                spec=cast(Any, spec),
                opts=in_namespace,
            )
        self.register_outputs({"namespace": self.namespace})


@dataclass(frozen=True)
class WarmBuilderArgs:
    project_key: str
    runner: RunnerConfig
    warm: WarmBuilderConfig
    namespace: str
    service_account: str
    job_namespace: str
    kubernetes_provider: pulumi.ProviderResource


class WarmBuilder(pulumi.ComponentResource):
    address: str
    ca_b64: pulumi.Output[str]
    client_cert_b64: pulumi.Output[str]
    client_key_b64: pulumi.Output[str]

    def __init__(self, name: str, args: WarmBuilderArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(component_type("builders", "WarmBuilder"), name, None, opts)
        namespace = args.namespace
        daemon = daemon_name(args.project_key)
        labels = daemon_labels(args.project_key)
        selector = daemon_selector(args.project_key)
        warm = args.warm
        certs = BuilderCertificates(
            f"{name}-tls",
            project=args.project_key,
            server_names=server_names(args.project_key, namespace),
            validity_days=warm.certificate_validity_days,
            renew_before_days=warm.certificate_renew_before_days,
            opts=pulumi.ResourceOptions(parent=self),
        )
        on_k8s = pulumi.ResourceOptions(parent=self, provider=args.kubernetes_provider)
        tls = k8s.core.v1.Secret(
            f"{name}-tls",
            metadata={"name": f"{daemon}-tls", "namespace": namespace, "labels": labels},
            type="Opaque",
            string_data={"ca.pem": certs.ca_pem, "cert.pem": certs.server_cert_pem, "key.pem": certs.server_key_pem},
            opts=on_k8s,
        )
        k8s.core.v1.Service(
            f"{name}-service",
            metadata={"name": daemon, "namespace": namespace, "labels": labels},
            spec={
                "clusterIP": "None",
                "selector": selector,
                "ports": [{"name": CONTAINER, "port": PORT, "targetPort": PORT, "protocol": "TCP"}],
            },
            opts=on_k8s,
        )
        resources = {
            "requests": {"cpu": warm.cpu_request, "memory": warm.memory_request},
            "limits": {"cpu": warm.cpu_limit, "memory": warm.memory_limit},
        }
        ready = {"exec": {"command": ["buildctl", "--addr", SOCKET, "debug", "workers"]}, "initialDelaySeconds": 5, "periodSeconds": 30}
        # buildkitd reads its certificate once, at start. A renewed one (the kubelet updates the mounted
        # Secret within about a minute) no longer matches the copy taken at start: the liveness probe fails
        # and the kubelet restarts the container with it. (Not a pod annotation with the certificate's
        # hash: unknown at preview, it would make the pack's checks of pod annotations fail closed.)
        alive = {
            "exec": {"command": ["sh", "-c", f"cmp -s {CERTS_DIR}/cert.pem {LOADED_CERT} && buildctl --addr {SOCKET} debug workers"]},
            "initialDelaySeconds": 15,
            "periodSeconds": 30,
        }
        claim: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": warm.storage}}}
        if warm.storage_class_name:
            claim["storageClassName"] = warm.storage_class_name
        pod_spec: dict[str, Any] = {
            "serviceAccountName": args.service_account,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "priorityClassName": job_priority_class_name(args.job_namespace),
            "securityContext": {"fsGroup": BUILDKIT_UID},
            "containers": [
                {
                    "name": CONTAINER,
                    "image": args.runner.job_image,
                    "command": ["rootlesskit", "buildkitd"],
                    "args": [
                        "--addr",
                        SOCKET,
                        "--addr",
                        f"tcp://0.0.0.0:{PORT}",
                        "--tlscacert",
                        f"{CERTS_DIR}/ca.pem",
                        "--tlscert",
                        f"{CERTS_DIR}/cert.pem",
                        "--tlskey",
                        f"{CERTS_DIR}/key.pem",
                        # as the job's daemon (runner_config BUILDKITD_FLAGS): /proc cannot be unmasked in a pod
                        "--oci-worker-no-process-sandbox",
                        *gc_flags(warm),
                    ],
                    "ports": [{"name": CONTAINER, "containerPort": PORT, "protocol": "TCP"}],
                    "securityContext": container_security_context(args.runner),
                    "resources": resources,
                    "readinessProbe": ready,
                    "livenessProbe": alive,
                    "lifecycle": {"postStart": {"exec": {"command": ["cp", f"{CERTS_DIR}/cert.pem", LOADED_CERT]}}},
                    "volumeMounts": [
                        {"name": "state", "mountPath": BUILDKIT_STATE_DIR},
                        {"name": "certs", "mountPath": CERTS_DIR, "readOnly": True},
                    ],
                }
            ],
            "volumes": [{"name": "certs", "secret": {"secretName": f"{daemon}-tls", "defaultMode": 0o440}}],
        }
        if args.runner.node_selector:
            pod_spec["nodeSelector"] = dict(args.runner.node_selector)
        k8s.apps.v1.StatefulSet(
            f"{name}-daemon",
            metadata={"name": daemon, "namespace": namespace, "labels": labels},
            spec=cast(
                Any,
                {
                    "replicas": 1,
                    "serviceName": daemon,
                    "selector": {"matchLabels": selector},
                    "podManagementPolicy": "OrderedReady",
                    # One pod: a rolling update stops the old daemon before the new one mounts the volume.
                    "updateStrategy": {"type": "RollingUpdate"},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": pod_spec,
                    },
                    "volumeClaimTemplates": [{"metadata": {"name": "state", "labels": labels}, "spec": claim}],
                },
            ),
            opts=pulumi.ResourceOptions(parent=self, provider=args.kubernetes_provider, depends_on=[tls]),
        )
        self.address = address(args.project_key, namespace)
        self.ca_b64 = b64(certs.ca_pem)
        self.client_cert_b64 = b64(certs.client_cert_pem)
        self.client_key_b64 = pulumi.Output.secret(b64(certs.client_key_pem))
        self.register_outputs({"address": self.address})
