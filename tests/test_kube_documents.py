"""Pure builders for Kubernetes documents: PSA labels, executor RBAC, LimitRange, quota, NetworkPolicies."""

from __future__ import annotations

import pytest
from conftest import make_config

from components.config import ConfigError, parse_config, parse_quantity
from components.namespace_documents import (
    job_limit_range_spec,
    job_namespace_annotations,
    job_namespace_labels,
    job_quota_spec,
    manager_namespace_labels,
)
from components.network_documents import job_egress_blocks, job_network_policies, manager_network_policies
from components.rbac_documents import executor_role_rules

SCOPE = {"type": "project_type", "projectId": 1}


def cfg(**overrides: object):
    return parse_config(make_config(**overrides))


def test_manager_namespace_is_restricted_with_pinned_versions() -> None:
    labels = manager_namespace_labels(cfg(kubernetes={"podSecurityVersion": "v1.34"}).kubernetes.pod_security_version)
    for mode in ("enforce", "warn", "audit"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"
        assert labels[f"pod-security.kubernetes.io/{mode}-version"] == "v1.34"


@pytest.mark.parametrize(
    ("runner", "enforce", "warn"),
    [
        ({"scope": SCOPE}, "baseline", "restricted"),
        ({"scope": SCOPE, "jobSecurityMode": "unconfined", "acknowledgeUnconfined": True}, "privileged", "baseline"),
    ],
)
def test_job_namespace_level_follows_security_mode(runner: dict, enforce: str, warn: str) -> None:
    config = cfg(runner=runner)
    labels = job_namespace_labels(config.runner.job_security_mode, config.kubernetes.pod_security_version)
    assert labels["pod-security.kubernetes.io/enforce"] == enforce
    assert labels["pod-security.kubernetes.io/warn"] == warn
    assert labels["pod-security.kubernetes.io/audit"] == warn
    assert labels["pod-security.kubernetes.io/enforce-version"] == "v1.33"
    assert job_namespace_annotations(config.runner.job_security_mode) == {
        "gitlab-buildkit-runner/job-security-mode": config.runner.job_security_mode
    }


def test_executor_rules_are_exactly_the_documented_minimum() -> None:
    rules = {r["resources"][0]: r["verbs"] for r in executor_role_rules()}
    assert rules == {
        "pods": ["create", "delete", "get", "list", "watch"],
        "pods/attach": ["create", "delete", "get", "patch"],
        "pods/exec": ["create", "delete", "get", "patch"],
        "pods/log": ["get", "list"],
        "secrets": ["create", "delete", "get", "update"],
        "serviceaccounts": ["get"],
        "services": ["create", "get"],
        "events": ["list", "watch"],
    }
    for rule in executor_role_rules():
        assert rule["apiGroups"] == [""]
        assert "*" not in rule["verbs"] and "*" not in rule["resources"]


def test_quantities() -> None:
    assert parse_quantity("500m") < parse_quantity("1") < parse_quantity("2")
    assert parse_quantity("1Gi") == 1024 * parse_quantity("1Mi")
    with pytest.raises(ValueError):
        parse_quantity("lots")


def test_limit_range_defaults_and_maxima() -> None:
    spec = job_limit_range_spec(cfg(runner={"scope": SCOPE, "cpuLimitOverwriteMax": "8", "memoryLimitOverwriteMax": "4Gi"}).runner)
    (limit,) = spec["limits"]
    assert limit["type"] == "Container"
    # Defaults are the helper's: every container the runner creates sets its own, and a container that
    # sets none (init containers included) must not count the build's limits against the quota.
    assert limit["default"] == {"cpu": "500m", "memory": "256Mi", "ephemeral-storage": "1Gi"}
    assert limit["defaultRequest"] == {"cpu": "100m", "memory": "128Mi", "ephemeral-storage": "100Mi"}
    # the larger of the build limit and the overwrite maximum: 8 CPUs, but 8Gi > 4Gi memory
    assert limit["max"] == {"cpu": "8", "memory": "8Gi", "ephemeral-storage": "40Gi"}


def test_quota_only_when_configured() -> None:
    assert job_quota_spec(cfg().kubernetes.job_quota) is None
    quota = job_quota_spec(
        cfg(kubernetes={"jobQuota": {"cpu": "10", "pods": 5}}, runner={"scope": SCOPE, "concurrent": 2}).kubernetes.job_quota
    )
    assert quota == {"hard": {"limits.cpu": "10", "limits.memory": "64Gi", "limits.ephemeral-storage": "200Gi", "pods": "5"}}


def test_job_network_policies_exact() -> None:
    policies = job_network_policies(cfg(network={"apiServerCidrs": ["172.20.0.1/32"]}).network)
    assert policies["deny-ingress"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    egress = policies["restrict-egress"]
    assert egress["podSelector"] == {} and egress["policyTypes"] == ["Egress"]
    dns, internet = egress["egress"]
    assert dns["ports"] == [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
    assert dns["to"][0]["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}
    assert internet["to"] == [
        {
            "ipBlock": {
                "cidr": "0.0.0.0/0",
                "except": [
                    "169.254.169.254/32",
                    "169.254.170.23/32",
                    "172.20.0.1/32",
                    "10.0.0.0/8",
                    "172.16.0.0/12",
                    "192.168.0.0/16",
                    "100.64.0.0/10",
                ],
            }
        },
        {"ipBlock": {"cidr": "::/0", "except": ["fd00:ec2::254/128", "fd00:ec2::23/128", "fc00::/7"]}},
    ]
    assert "ports" not in internet


def test_narrow_allow_list_only_gets_exceptions_inside_it() -> None:
    blocks = job_egress_blocks(cfg(network={"jobEgressCidrs": ["52.0.0.0/8"]}).network)
    assert blocks == [{"ipBlock": {"cidr": "52.0.0.0/8"}}]


def test_allowed_range_inside_an_excluded_range_is_a_config_error() -> None:
    # Refused by the config model itself (before any resource), not by the builder.
    with pytest.raises(ConfigError, match=r"network.jobEgressCidrs = \"10.1.0.0/16\": lies inside the always-excluded range 10.0.0.0/8"):
        cfg(network={"jobEgressCidrs": ["10.1.0.0/16"]})
    with pytest.raises(ConfigError, match=r"169.254.169.254/32"):
        cfg(network={"jobEgressCidrs": ["169.254.169.254/32"], "privateCidrs": ["10.0.0.0/8"]})


def test_manager_network_policies_exact() -> None:
    policies = manager_network_policies(
        cfg(
            network={
                "apiServerCidrs": ["10.20.0.0/16"],
                "gitlabCidrs": ["203.0.113.0/24"],
                "metricsNamespace": "monitoring",
                "apiServerPort": 6443,
            }
        ).network,
        metrics_enabled=True,
    )
    ingress = policies["manager-ingress"]
    assert ingress["ingress"] == [
        {
            "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
            "ports": [{"protocol": "TCP", "port": 9252}],
        }
    ]
    _, gitlab, api = policies["manager-egress"]["egress"]
    assert gitlab == {"to": [{"ipBlock": {"cidr": "203.0.113.0/24"}}], "ports": [{"protocol": "TCP", "port": 443}]}
    assert api == {"to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}], "ports": [{"protocol": "TCP", "port": 6443}]}


def test_manager_ingress_denied_without_metrics_namespace() -> None:
    policies = manager_network_policies(cfg().network, metrics_enabled=True)
    assert policies["manager-ingress"] == {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": []}
    api = policies["manager-egress"]["egress"][2]
    assert api == {"ports": [{"protocol": "TCP", "port": 443}]}  # no apiServerCidrs: port-only rule (documented)


def test_generated_documents_pass_strict_schema_validation() -> None:
    import kubernetes_validate

    config = cfg(
        network={"apiServerCidrs": ["10.20.0.0/16"], "metricsNamespace": "monitoring"},
        kubernetes={"jobQuota": {"pods": 5}},
        runner={"scope": SCOPE, "concurrent": 2},
    )
    documents = [
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": name, "namespace": "ns"}, "spec": spec}
        for name, spec in {**job_network_policies(config.network), **manager_network_policies(config.network, metrics_enabled=True)}.items()
    ]
    documents.append(
        {
            "apiVersion": "v1",
            "kind": "LimitRange",
            "metadata": {"name": "l", "namespace": "ns"},
            "spec": job_limit_range_spec(config.runner),
        }
    )
    documents.append(
        {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {"name": "q", "namespace": "ns"},
            "spec": job_quota_spec(config.kubernetes.job_quota),
        }
    )
    for document in documents:
        kubernetes_validate.validate(document, "1.33.0", strict=True)
    broken = {**documents[0], "spec": {**documents[0]["spec"], "podSelectr": {}}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, "1.33.0", strict=True)


def test_preview_rules_only_read_and_never_secrets() -> None:
    """The preview ServiceAccount can show a diff; it cannot change anything or read the runner token."""
    from components.rbac_documents import PREVIEW_CLUSTER_RULES, PREVIEW_NAMESPACED_RULES, preview_rules

    for rule in preview_rules(PREVIEW_NAMESPACED_RULES) + preview_rules(PREVIEW_CLUSTER_RULES):
        assert set(rule["verbs"]) <= {"get", "list", "watch"}, rule
        assert not {"secrets", "pods/exec", "pods/attach", "serviceaccounts/token", "*"} & set(rule["resources"]), rule
    assert [r["resources"] for r in preview_rules(PREVIEW_CLUSTER_RULES)] == [["namespaces"], ["priorityclasses"]]
