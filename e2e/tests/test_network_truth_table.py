"""What the stack's NetworkPolicies allow a job pod, per an evaluator that is not ours.

e2e/netpol_oracle is cyclonus's NetworkPolicy matcher (the network-policy-api project's truth-table
tool grew from it) over the policies the stack generates. Each flow below is one the README's
"Network isolation per engine" section speaks of; the test fails on any flow allowed that the README
does not promise, and on any promised flow denied. What it proves holds where the engine enforces
NetworkPolicies on job pods (calico, cilium): the config refuses the others without acknowledgement.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from e2e import tools
from verify.harness import run_stack

JOBS, MANAGER, DNS_NS = "gitlab-runner-jobs", "gitlab-runner", "kube-system"
JOB_POD = {
    "PodLabels": {"job.runner.gitlab.com/pod": "runner-1-project-2"},
    "NamespaceLabels": {"kubernetes.io/metadata.name": JOBS},
    "Namespace": JOBS,
}


def internal(namespace: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"PodLabels": labels, "NamespaceLabels": {"kubernetes.io/metadata.name": namespace}, "Namespace": namespace}


# (flow, destination peer, port, protocol, allowed as the README promises)
EGRESS = [
    ("instance metadata (IMDS, IPv4)", {"IP": "169.254.169.254"}, 80, "TCP", False),
    ("instance metadata (IMDS, IPv6)", {"IP": "fd00:ec2::254"}, 80, "TCP", False),
    ("EKS Pod Identity agent (IPv4)", {"IP": "169.254.170.23"}, 80, "TCP", False),
    ("EKS Pod Identity agent (IPv6)", {"IP": "fd00:ec2::23"}, 80, "TCP", False),
    ("the API server (service IP)", {"IP": "10.100.0.1"}, 443, "TCP", False),
    ("the API server (a VPC endpoint)", {"IP": "10.30.12.7"}, 443, "TCP", False),
    ("a node's kubelet", {"IP": "10.30.40.5"}, 10250, "TCP", False),
    ("cluster DNS (UDP)", {"IP": "10.30.1.2", "Internal": internal(DNS_NS, {"k8s-app": "kube-dns"})}, 53, "UDP", True),
    ("cluster DNS (TCP)", {"IP": "10.30.1.2", "Internal": internal(DNS_NS, {"k8s-app": "kube-dns"})}, 53, "TCP", True),
    ("another pod in kube-system", {"IP": "10.30.1.9", "Internal": internal(DNS_NS, {"k8s-app": "metrics-server"})}, 443, "TCP", False),
    ("a pod in another namespace", {"IP": "10.30.2.4", "Internal": internal("payments", {"app": "api"})}, 8080, "TCP", False),
    ("the runner manager", {"IP": "10.30.3.3", "Internal": internal(MANAGER, {"app": "gitlab-runner"})}, 9252, "TCP", False),
    ("another job pod", {"IP": "10.30.3.8", "Internal": JOB_POD}, 1234, "TCP", False),
    ("the VPC (a database)", {"IP": "172.20.4.4"}, 5432, "TCP", False),
    ("a home network range", {"IP": "192.168.1.10"}, 443, "TCP", False),
    ("carrier-grade NAT range", {"IP": "100.64.0.10"}, 443, "TCP", False),
    ("an IPv6 ULA address", {"IP": "fd12:3456::1"}, 443, "TCP", False),
    ("GitLab (gitlab.com)", {"IP": "172.65.251.78"}, 443, "TCP", True),
    ("ECR (eu-west-1)", {"IP": "52.95.150.10"}, 443, "TCP", True),
    ("the internet (IPv4)", {"IP": "1.1.1.1"}, 443, "TCP", True),
    ("the internet (IPv6)", {"IP": "2606:4700:4700::1111"}, 443, "TCP", True),
]
INGRESS = [
    ("from another namespace", internal("payments", {"app": "api"}), 8080, False),
    ("from the runner manager", internal(MANAGER, {"app": "gitlab-runner"}), 8080, False),
    ("from another job pod", JOB_POD, 8080, False),
]


def _plain(value: Any) -> Any:
    """The mocks' numbers arrive as floats (53.0); the Kubernetes types want integers."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


@pytest.fixture(scope="module")
def policies() -> list[dict[str, Any]]:
    found = [_plain(dict(r.inputs)) for r in run_stack("dev").resources if r.type == "kubernetes:networking.k8s.io/v1:NetworkPolicy"]
    assert {p["metadata"]["name"] for p in found} >= {"restrict-egress", "deny-ingress"}
    return found


def evaluate(policies: list[dict[str, Any]], traffic: list[dict[str, Any]]) -> list[dict[str, bool]]:
    binary = tools.ensure(["netpol-oracle"])["netpol-oracle"].binary("netpol-oracle")
    result = subprocess.run(
        [str(binary)], input=json.dumps({"policies": policies, "traffic": traffic}), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return list(json.loads(result.stdout))


def test_job_pod_egress_is_exactly_what_the_readme_promises(policies: list[dict[str, Any]]) -> None:
    traffic = [
        {"Source": {"IP": "10.30.3.7", "Internal": JOB_POD}, "Destination": dest, "ResolvedPort": port, "Protocol": protocol}
        for _, dest, port, protocol, _ in EGRESS
    ]
    verdicts = evaluate(policies, traffic)
    wrong = [
        f"{flow}: {'allowed' if verdict['egress'] else 'denied'}, README says {'allowed' if promised else 'denied'}"
        for (flow, _, _, _, promised), verdict in zip(EGRESS, verdicts, strict=True)
        if verdict["egress"] != promised
    ]
    assert wrong == []


def test_nothing_reaches_a_job_pod(policies: list[dict[str, Any]]) -> None:
    traffic = [
        {
            "Source": {"IP": "10.30.9.9", "Internal": source},
            "Destination": {"IP": "10.30.3.7", "Internal": JOB_POD},
            "ResolvedPort": port,
            "Protocol": "TCP",
        }
        for _, source, port, _ in INGRESS
    ]
    verdicts = evaluate(policies, traffic)
    assert [flow for (flow, *_), verdict in zip(INGRESS, verdicts, strict=True) if verdict["ingress"]] == []


def test_the_evaluator_sees_a_policy_change() -> None:
    """Not vacuous: without the stack's policies the same evaluator allows IMDS and the manager."""
    traffic = [
        {"Source": {"IP": "10.30.3.7", "Internal": JOB_POD}, "Destination": dest, "ResolvedPort": port, "Protocol": protocol}
        for _, dest, port, protocol, _ in EGRESS[:1] + EGRESS[11:12]
    ]
    assert [v["egress"] for v in evaluate([], traffic)] == [True, True]
