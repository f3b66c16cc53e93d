"""Warm builders (builders.mode 'warm') and the CI/CD variables that carry credentials.

A warm daemon is a build pod that lives: it is checked like one (the Pod Security controls of
pod_security_policies apply to it as to every workload) and, here, as designed:
- every workload that is, or claims to be, a warm daemon (in a builders namespace, or labelled
  app.kubernetes.io/name=buildkitd) is a StatefulSet of one, in a builders namespace, with exactly one
  container `buildkitd` running an image the runner's allowed_images admit, listening on TCP only with
  mTLS (--tlscacert, --tlscert, --tlskey), no service-account token, one project label, and only its own
  TLS Secret and its state volume;
- no two daemons share a project, a Secret or a name;
- Services in a builders namespace are ClusterIP (headless or not), port 1234 only, no node port,
  load balancer, external IP or ExternalName;
- NetworkPolicies in a builders namespace admit ingress only from the job namespace its mark names,
  on 1234, never from an ipBlock; its egress is isolated like the jobs' (never the metadata addresses);
- credential CI/CD variables (push keys, role, the daemon's client certificate and key) are protected;
  the secret ones masked.
Ref: https://github.com/moby/buildkit/blob/v0.25.1/cmd/buildkitd/main.go (serverCredentials: client certificates
required and verified against --tlscacert)
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from typing import Any

from common import resource_policy, stack_policy, to_plain_data
from kubernetes_kinds import kube_kind, objects, pods
from marks import (
    APPARMOR_PROFILE_ANNOTATION,
    BUILDERS_FOR_ANNOTATION,
    JOB_SECURITY_MODE_ANNOTATION,
    PSA_LABEL_PREFIX,
    SECCOMP_PROFILE_ANNOTATION,
)
from network_policies import metadata_problems, policies_in
from pulumi_policy import ReportViolation, ResourceValidationArgs, StackValidationArgs
from runner_release_policies import checked_runner_config, is_runner_release, namespace_marks

DAEMON_CONTAINER = "buildkitd"
DAEMON_PORT = 1234
APP_LABEL = "app.kubernetes.io/name"
PROJECT_LABEL = "gitlab-buildkit-runner/project"
TLS_FLAGS = ("--tlscacert", "--tlscert", "--tlskey")
VARIABLE_TYPES = (
    "gitlab:index/projectVariable:ProjectVariable",
    "gitlab:index/groupVariable:GroupVariable",
    "gitlab:index/instanceVariable:InstanceVariable",
)
# key -> must also be masked
CREDENTIAL_VARIABLES = {
    "AWS_ACCESS_KEY_ID": True,
    "AWS_SECRET_ACCESS_KEY": True,
    "AWS_ROLE_ARN": False,
    "BUILDKIT_HOST": False,
    "BUILDKIT_TLS_CA_B64": False,
    "BUILDKIT_TLS_CERT_B64": True,
    "BUILDKIT_TLS_KEY_B64": True,
}


def _name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


def _namespace(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("namespace") or "default")


MODE_MARKS = (JOB_SECURITY_MODE_ANNOTATION, SECCOMP_PROFILE_ANNOTATION, APPARMOR_PROFILE_ANNOTATION)
PSA_ENFORCE = f"{PSA_LABEL_PREFIX}/enforce"


def _namespaces(args: StackValidationArgs) -> dict[str, dict[str, dict[str, str]]]:
    """Every Namespace resource's marks, as plain data: name -> {"annotations": ..., "labels": ...}."""
    return {
        name: {
            "annotations": {str(k): str(v) for k, v in to_plain_data(annotations).items()},
            "labels": {str(k): str(v) for k, v in to_plain_data(labels).items()},
        }
        for name, annotations, labels in namespace_marks(args)
    }


def marks_problems(namespaces: Mapping[str, Mapping[str, Mapping[str, str]]], builders: Mapping[str, str]) -> list[str]:
    """A builders namespace carries its job namespace's job security mode, profile names and PSA level:
    its daemons then get exactly what the job pods' build containers get, checked against the runner's
    config through the job namespace (runner_release_policies)."""
    problems = []
    for name, job in builders.items():
        if job not in namespaces:
            problems.append(f"builders namespace {name!r}: its job namespace {job!r} is not a Namespace of this stack")
            continue
        own, theirs = namespaces[name], namespaces[job]
        for key in MODE_MARKS:
            if own["annotations"].get(key) != theirs["annotations"].get(key):
                problems.append(
                    f"builders namespace {name!r}: {key}={own['annotations'].get(key)!r} differs from the job namespace's "
                    f"{theirs['annotations'].get(key)!r}: the daemons get exactly the build containers' mode"
                )
        if own["labels"].get(PSA_ENFORCE) != theirs["labels"].get(PSA_ENFORCE):
            problems.append(
                f"builders namespace {name!r}: {PSA_ENFORCE}={own['labels'].get(PSA_ENFORCE)!r} differs from the job namespace's "
                f"{theirs['labels'].get(PSA_ENFORCE)!r}"
            )
    return problems


def _is(profile: Any, expected: Mapping[str, str] | None) -> bool:
    if expected is None:
        return profile is None or profile == {"type": "RuntimeDefault"}
    return profile == dict(expected)


def profile_problems(where: str, spec: Mapping[str, Any], marks: Mapping[str, Mapping[str, str]]) -> list[str]:
    """The daemon container's seccomp/AppArmor fields, as the namespace's mode admits them on build containers."""
    annotations = marks.get("annotations") or {}
    mode = annotations.get(JOB_SECURITY_MODE_ANNOTATION) or "baseline"
    seccomp: dict[str, str] | None = None
    apparmor: dict[str, str] | None = None
    if mode == "confined":
        seccomp = {"type": "Localhost", "localhostProfile": str(annotations.get(SECCOMP_PROFILE_ANNOTATION))}
        if annotations.get(APPARMOR_PROFILE_ANNOTATION):
            apparmor = {"type": "Localhost", "localhostProfile": str(annotations.get(APPARMOR_PROFILE_ANNOTATION))}
    elif mode == "unconfined":
        if (marks.get("labels") or {}).get(PSA_ENFORCE) != "privileged":
            return [f"{where}: an unconfined daemon needs its namespace to enforce PSA 'privileged' (acknowledged)"]
        seccomp, apparmor = {"type": "Unconfined"}, {"type": "Unconfined"}
    elif mode != "baseline":
        return [f"{where}: unknown job security mode {mode!r}"]
    problems = []
    for container in spec.get("containers") or []:
        context = container.get("securityContext") or {}
        for field, expected in (("seccompProfile", seccomp), ("appArmorProfile", apparmor)):
            if not _is(context.get(field), expected):
                problems.append(
                    f"{where}: container {container.get('name')!r} {field} {context.get(field)!r}: in the {mode!r} job security mode "
                    f"a daemon has {expected or 'the runtime default'}, as the build containers"
                )
    return problems


def allowed_images(args: StackValidationArgs, report_violation: ReportViolation) -> list[str]:
    images: list[str] = []
    for r in args.resources:
        if is_runner_release(r.resource_type, r.props):
            config = checked_runner_config(r.props, report_violation, r.urn)
            for runner in (config.data if config else {}).get("runners") or []:
                images += [str(i) for i in (runner.get("kubernetes") or {}).get("allowed_images") or []]
    return images


def _addresses(arguments: list[str]) -> list[str]:
    found = []
    for index, arg in enumerate(arguments):
        if arg == "--addr" and index + 1 < len(arguments):
            found.append(arguments[index + 1])
        elif arg.startswith("--addr="):
            found.append(arg.split("=", 1)[1])
    return found


def _flag_values(arguments: list[str], flag: str) -> list[str]:
    values = [arguments[i + 1] for i, a in enumerate(arguments) if a == flag and i + 1 < len(arguments)]
    return values + [a.split("=", 1)[1] for a in arguments if a.startswith(flag + "=")]


def daemon_problems(
    kind: str, obj: Mapping[str, Any], spec: Mapping[str, Any], meta: Mapping[str, Any], builders: Mapping[str, str], images: list[str]
) -> list[str]:
    name, namespace = _name(obj), _namespace(obj)
    where = f"{kind} {name!r} in {namespace!r}"
    problems = []
    if kind != "StatefulSet":
        problems.append(f"{where}: a warm daemon must be a StatefulSet of one (its volume is its state)")
    if namespace not in builders:
        problems.append(f"{where}: a warm daemon runs only in a builders namespace (annotation {BUILDERS_FOR_ANNOTATION})")
    replicas = (obj.get("spec") or {}).get("replicas", 1)
    if replicas != 1:
        problems.append(f"{where}: replicas {replicas!r}: one daemon per volume and project")
    project = (meta.get("labels") or {}).get(PROJECT_LABEL)
    if not project or ((obj.get("metadata") or {}).get("labels") or {}).get(PROJECT_LABEL) != project:
        problems.append(f"{where}: the daemon and its pods must carry the same {PROJECT_LABEL} label (one project per daemon)")
    if spec.get("initContainers") or spec.get("ephemeralContainers") or len(spec.get("containers") or []) != 1:
        problems.append(f"{where}: exactly one container, {DAEMON_CONTAINER!r}, and no init or ephemeral containers")
    if spec.get("automountServiceAccountToken") is not False:
        problems.append(f"{where}: automountServiceAccountToken must be false (build steps run in the daemon)")
    if spec.get("hostNetwork") or spec.get("hostPID") or spec.get("hostIPC"):
        problems.append(f"{where}: no host namespaces")
    for container in spec.get("containers") or []:
        if container.get("name") != DAEMON_CONTAINER:
            problems.append(f"{where}: container {container.get('name')!r} is not {DAEMON_CONTAINER!r}")
        image = str(container.get("image") or "")
        if not any(fnmatch.fnmatchcase(image, pattern) for pattern in images):
            problems.append(f"{where}: image {image!r} is not admitted by the runner's allowed_images {images}")
        command = [str(c) for c in container.get("command") or []]
        if command != ["rootlesskit", "buildkitd"]:
            # A shell (sh -c "...") or another entrypoint would hide the daemon's real flags from this check.
            problems.append(f"{where}: command {command!r}: exactly ['rootlesskit', 'buildkitd'], the flags in args")
        arguments = [str(a) for a in [*command, *(container.get("args") or [])]]
        for address in _addresses(arguments):
            if not (address.startswith("unix://") or address == f"tcp://0.0.0.0:{DAEMON_PORT}"):
                problems.append(f"{where}: --addr {address!r}: only a unix socket and tcp://0.0.0.0:{DAEMON_PORT} (with mTLS)")
        if any(a.startswith("tcp://") for a in _addresses(arguments)):
            for flag in TLS_FLAGS:
                if not _flag_values(arguments, flag):
                    problems.append(f"{where}: a TCP address without {flag}: the daemon must require client certificates of its project")
        if container.get("env") or container.get("envFrom"):
            problems.append(f"{where}: no environment: a buildkitd flag or a credential could hide there")
    secrets = [v for v in spec.get("volumes") or [] if "secret" in v]
    others = [v for v in spec.get("volumes") or [] if "secret" not in v]
    if others:
        problems.append(f"{where}: volumes {[v.get('name') for v in others]}: only its TLS Secret (the state is its volume claim)")
    if [str((v.get("secret") or {}).get("secretName")) for v in secrets] != [f"{name}-tls"]:
        problems.append(
            f"{where}: exactly one Secret volume, its own {name + '-tls'!r} (a daemon never mounts another project's certificates)"
        )
    claims = [(c.get("metadata") or {}).get("name") for c in (obj.get("spec") or {}).get("volumeClaimTemplates") or []]
    if claims != ["state"]:
        problems.append(f"{where}: volume claims {claims}: exactly one, 'state'")
    return problems


def service_problems(obj: Mapping[str, Any]) -> list[str]:
    where = f"Service {_name(obj)!r} in {_namespace(obj)!r}"
    spec = obj.get("spec") or {}
    problems = []
    if spec.get("type", "ClusterIP") != "ClusterIP":
        problems.append(f"{where}: type {spec.get('type')!r}: daemons are reached inside the cluster only (ClusterIP)")
    if spec.get("externalIPs") or spec.get("externalName") or spec.get("loadBalancerIP"):
        problems.append(f"{where}: no external IPs or names")
    for port in spec.get("ports") or []:
        if port.get("port") != DAEMON_PORT or port.get("nodePort"):
            problems.append(f"{where}: port {port.get('port')!r}: only {DAEMON_PORT}, no node port")
    if not (spec.get("selector") or {}):
        problems.append(f"{where}: a Service without a selector could point anywhere (Endpoints by hand)")
    return problems


def ingress_problems(obj: Mapping[str, Any], job_namespace: str) -> list[str]:
    where = f"NetworkPolicy {_name(obj)!r} in {_namespace(obj)!r}"
    problems = []
    for index, rule in enumerate((obj.get("spec") or {}).get("ingress") or []):
        peers = rule.get("from") or []
        if not peers:
            problems.append(f"{where}: ingress[{index}] has no `from`: it admits everyone")
        for peer in peers:
            selector = (peer.get("namespaceSelector") or {}).get("matchLabels") or {}
            if (
                peer.get("ipBlock")
                or selector != {"kubernetes.io/metadata.name": job_namespace}
                or (peer.get("namespaceSelector") or {}).get("matchExpressions")
            ):
                problems.append(f"{where}: ingress[{index}] admits {peer!r}; only pods of the job namespace {job_namespace!r}")
        ports = rule.get("ports") or []
        if not ports or any(p.get("port") != DAEMON_PORT or p.get("endPort") for p in ports):
            problems.append(f"{where}: ingress[{index}] ports {ports!r}: only TCP {DAEMON_PORT}")
    return problems


def claims_daemon(obj: Mapping[str, Any], meta: Mapping[str, Any]) -> bool:
    labels = [(obj.get("metadata") or {}).get("labels") or {}, meta.get("labels") or {}]
    return any(str(found.get(APP_LABEL, "")).lower() == DAEMON_CONTAINER for found in labels)


def _plain_meta(meta: Any) -> dict[str, Any]:
    """Name, namespace and labels only: the rest (annotations with a certificate's hash, say) may be unknown at preview."""
    meta = meta or {}
    return {key: to_plain_data(meta.get(key)) for key in ("name", "namespace", "labels") if meta.get(key) is not None}


def _warm_builders(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    namespaces = _namespaces(args)
    # builders namespace -> the job namespace its mark admits
    builders = {
        name: m["annotations"][BUILDERS_FOR_ANNOTATION] for name, m in namespaces.items() if m["annotations"].get(BUILDERS_FOR_ANNOTATION)
    }
    for problem in marks_problems(namespaces, builders):
        report_violation(problem, None)
    images: list[str] | None = None
    projects: dict[str, str] = {}
    for r in args.resources:
        found = kube_kind(r.resource_type, r.props)
        if found is None:
            continue
        single = r.resource_type.removesuffix("List") if found.list else r.resource_type
        for _, item in objects(r.resource_type, r.props):
            head = {"metadata": _plain_meta(item.get("metadata"))}
            in_builders = _namespace(head) in builders
            for _location, spec, meta in pods(single, item):
                template_meta = _plain_meta(meta)
                if not (in_builders or claims_daemon(head, template_meta)):
                    continue
                if images is None:
                    images = allowed_images(args, report_violation)
                obj = {**head, "spec": {k: to_plain_data(v) for k, v in (item.get("spec") or {}).items() if k != "template"}}
                plain_spec = to_plain_data(spec)
                for problem in daemon_problems(found.kind, obj, plain_spec, template_meta, builders, images):
                    report_violation(problem, r.urn)
                # A claimed daemon anywhere: its profiles as its namespace's marks admit (none outside a builders namespace).
                marks = namespaces.get(_namespace(head), {}) if in_builders else {}
                for problem in profile_problems(f"{found.kind} {_name(head)!r}", plain_spec, marks):
                    report_violation(problem, r.urn)
                project = str((template_meta.get("labels") or {}).get(PROJECT_LABEL) or "")
                if project and projects.setdefault(project, _name(head)) != _name(head):
                    report_violation(
                        f"daemons {projects[project]!r} and {_name(head)!r} serve one project {project!r}: one daemon per project", r.urn
                    )
            if not in_builders:
                continue
            if found.kind == "Service":
                for problem in service_problems(to_plain_data(item)):
                    report_violation(problem, r.urn)
            if (found.group, found.kind) == ("networking.k8s.io", "NetworkPolicy"):
                for problem in ingress_problems(to_plain_data(item), builders[_namespace(head)]):
                    report_violation(problem, r.urn)
    # The daemons run build steps: their egress is held to the jobs' rule (never the metadata addresses).
    for namespace in builders:
        for problem in metadata_problems(policies_in(args, namespace), namespace):
            report_violation(f"builders namespace: {problem}", None)


def _credential_variables(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type not in VARIABLE_TYPES:
        return
    key = str(args.props.get("key") or "")
    if not re.fullmatch(r"[A-Za-z0-9_]+", key) or key.upper() not in CREDENTIAL_VARIABLES:
        return
    if key != key.upper():
        report_violation(
            f"CI/CD variable {key!r}: credential variables are spelled {key.upper()!r} (what the template and tools read)", None
        )
    if args.props.get("protected") is not True:
        report_violation(f"CI/CD variable {key!r} must be protected: only protected refs may hold a credential", None)
    if CREDENTIAL_VARIABLES[key.upper()] and args.props.get("masked") is not True:
        report_violation(f"CI/CD variable {key!r} must be masked: its value is a secret", None)


def policies() -> list:
    return [
        stack_policy(
            "warm-builders-as-designed",
            "A warm BuildKit daemon is a StatefulSet of one in the builders namespace, one container running an allowed "
            "rootless image, TCP only with mTLS, no token, one project, only its own certificates; its Service and "
            "NetworkPolicies admit only the job namespace, on 1234.",
            "Let the stack create warm builders (builders.mode 'warm'); do not add workloads, Services or policies to the builders namespace.",
            _warm_builders,
        ),
        resource_policy(
            "gitlab-credential-variables-protected",
            "CI/CD variables that carry credentials (push keys, push role, the warm daemon's address and client certificate) "
            "are protected, and the secret ones masked.",
            "Let the stack write them (it always sets protected and masked); never re-create them by hand unprotected.",
            _credential_variables,
        ),
    ]
