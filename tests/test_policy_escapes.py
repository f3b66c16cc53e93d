"""Escape routes around the pack, class by class, through its real gRPC protocol: a compliant baseline,
then one property changed, and the exact mandatory violations. Several variants per class."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
from test_policy_pack import COMPLIANT_POD, first, wrap

from verify.policy_client import PolicyPack

pytestmark = pytest.mark.xdist_group("policy-pack")


@pytest.fixture(scope="module")
def pack() -> Iterator[PolicyPack]:
    with PolicyPack() as running:
        yield running


def mandatory_of(pack: PolicyPack, typ: str, props: dict[str, Any]) -> list[str]:
    """The policies with a mandatory violation (each once)."""
    return sorted({d.policy for d in pack.analyze(typ, props) if d.level == "mandatory"})


def privileged_pod() -> dict[str, Any]:
    pod = copy.deepcopy(COMPLIANT_POD)
    first(pod)["privileged"] = True
    return pod


# --- Class 1: Patch kinds, other versions, Lists, kinds the pack does not model ------------------


def as_patch(kind: str, pod: dict[str, Any], namespace: str = "kube-system") -> tuple[str, dict[str, Any]]:
    typ, props = wrap(kind, pod)
    props["metadata"] = {**props.get("metadata", {}), "namespace": namespace}
    return typ + "Patch", props


@pytest.mark.parametrize(
    "kind", ["Pod", "PodTemplate", "ReplicationController", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob"]
)
def test_every_workload_patch_gets_the_pod_security_controls(pack: PolicyPack, kind: str) -> None:
    assert mandatory_of(pack, *as_patch(kind, COMPLIANT_POD)) == []
    assert mandatory_of(pack, *as_patch(kind, privileged_pod())) == ["kubernetes-pod-privileged"]


@pytest.mark.parametrize(
    ("typ", "path"),
    [
        ("kubernetes:apps/v1beta2:Deployment", ("spec", "template")),
        ("kubernetes:apps/v1beta1:StatefulSet", ("spec", "template")),
        ("kubernetes:extensions/v1beta1:DaemonSet", ("spec", "template")),
        ("kubernetes:extensions/v1beta1:DeploymentPatch", ("spec", "template")),
        ("kubernetes:batch/v1beta1:CronJob", ("spec", "jobTemplate", "spec", "template")),
    ],
)
def test_other_api_versions_are_the_same_kind(pack: PolicyPack, typ: str, path: tuple[str, ...]) -> None:
    def build(pod: dict[str, Any]) -> dict[str, Any]:
        props: dict[str, Any] = {"metadata": {"name": "x"}}
        node = props
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = {"metadata": pod["metadata"], "spec": pod["spec"]}
        return props

    assert mandatory_of(pack, typ, build(COMPLIANT_POD)) == []
    assert mandatory_of(pack, typ, build(privileged_pod())) == ["kubernetes-pod-privileged"]


@pytest.mark.parametrize("kind", ["Deployment", "Pod", "CronJob"])
def test_list_items_are_each_checked(pack: PolicyPack, kind: str) -> None:
    good_type, good = wrap(kind, COMPLIANT_POD)
    _, bad = wrap(kind, privileged_pod())
    typ = good_type + "List"
    assert mandatory_of(pack, typ, {"items": [good, good]}) == []
    assert mandatory_of(pack, typ, {"items": [good, bad]}) == ["kubernetes-pod-privileged"]


@pytest.mark.parametrize(
    ("typ", "props"),
    [
        # a CRD's workload (Argo Rollouts) as a typed resource from crd2pulumi
        ("kubernetes:argoproj.io/v1alpha1:Rollout", {"spec": {"template": {"spec": COMPLIANT_POD["spec"]}}}),
        # the same through the generic CustomResource type
        (
            "kubernetes:apiextensions.k8s.io:CustomResource",
            {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "spec": {"template": {"spec": COMPLIANT_POD["spec"]}}},
        ),
        (
            "kubernetes:apiextensions.k8s.io:CustomResourcePatch",
            {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "spec": {"template": {"spec": COMPLIANT_POD["spec"]}}},
        ),
        # a modelled kind with a second pod spec somewhere the pack does not read
        (
            "kubernetes:apps/v1:Deployment",
            {"spec": {"template": {"spec": COMPLIANT_POD["spec"]}, "extra": {"containers": [{"name": "x"}]}}},
        ),
        # a pod spec hidden in an unmodelled List item
        (
            "kubernetes:core/v1:List",
            {"items": [{"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"template": {"spec": COMPLIANT_POD["spec"]}}}]},
        ),
    ],
)
def test_pod_specs_in_kinds_the_pack_does_not_model_fail_closed(pack: PolicyPack, typ: str, props: dict[str, Any]) -> None:
    assert mandatory_of(pack, typ, props) == ["kubernetes-workload-kind-understood"]


def test_kinds_without_pod_specs_are_not_flagged(pack: PolicyPack) -> None:
    assert mandatory_of(pack, "kubernetes:core/v1:ConfigMap", {"data": {"containers": "[]"}}) == []
    assert mandatory_of(pack, "kubernetes:argoproj.io/v1alpha1:AppProject", {"spec": {"destinations": []}}) == []


def test_a_patch_that_leaves_the_pod_template_alone_passes(pack: PolicyPack) -> None:
    assert (
        mandatory_of(pack, "kubernetes:apps/v1:DeploymentPatch", {"metadata": {"name": "d", "namespace": "x"}, "spec": {"replicas": 3}})
        == []
    )


# --- Namespaces and RBAC through patches, aggregation and escalation ------------------------------

NS = "kubernetes:core/v1:Namespace"
PSA = "pod-security.kubernetes.io"


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({f"{PSA}/enforce": "privileged"}, ["kubernetes-namespace-privileged-acknowledged", "kubernetes-namespace-psa-labels"]),
        ({f"{PSA}/enforce": "baseline"}, ["kubernetes-namespace-psa-labels"]),
        ({f"{PSA}/warn": "privileged"}, ["kubernetes-namespace-psa-labels"]),
        ({f"{PSA}/audit": "baseline", f"{PSA}/audit-version": "latest"}, ["kubernetes-namespace-psa-labels"]),
        ({f"{PSA}/enforce": "restricted", f"{PSA}/enforce-version": "v1.33"}, []),
        ({"team": "platform"}, []),
    ],
)
def test_namespace_patches_may_only_tighten_pod_security(pack: PolicyPack, labels: dict, expected: list[str]) -> None:
    props = {"metadata": {"name": "kube-system", "labels": labels}}
    assert mandatory_of(pack, NS + "Patch", props) == expected


def test_a_namespace_patch_cannot_acknowledge_itself(pack: PolicyPack) -> None:
    props = {
        "metadata": {
            "name": "kube-system",
            "labels": {f"{PSA}/enforce": "privileged"},
            "annotations": {"gitlab-buildkit-runner/job-security-mode": "unconfined"},
        }
    }
    assert "kubernetes-namespace-privileged-acknowledged" in mandatory_of(pack, NS + "Patch", props)


ROLE_RULE = {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}


@pytest.mark.parametrize(
    "typ",
    [
        "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole",
        "kubernetes:rbac.authorization.k8s.io/v1:RolePatch",
        "kubernetes:rbac.authorization.k8s.io/v1beta1:ClusterRolePatch",
    ],
)
@pytest.mark.parametrize(
    "change",
    [
        {"aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"kubernetes.io/bootstrapping": "rbac-defaults"}}]}},
        {"rules": [{**ROLE_RULE, "verbs": ["escalate"]}]},
        {"rules": [{**ROLE_RULE, "verbs": ["Bind"]}]},
        {"rules": [{"apiGroups": [""], "resources": ["users", "groups"], "verbs": ["impersonate"]}]},
        {"rules": [{**ROLE_RULE, "resources": ["pods/*"]}]},
        {"rules": [{**ROLE_RULE, "resources": ["*/scale"]}]},
        {"rules": [{"nonResourceURLs": ["*"], "verbs": ["get"]}]},
        {"rules": [{**ROLE_RULE, "resourceNames": ["gitlab-*"]}]},
    ],
)
def test_roles_may_not_escalate_aggregate_or_use_wildcards(pack: PolicyPack, typ: str, change: dict) -> None:
    base = {"metadata": {"name": "r"}, "rules": [ROLE_RULE]}
    assert mandatory_of(pack, typ, base) == []
    assert mandatory_of(pack, typ, {**base, **change}) == ["kubernetes-rbac-no-wildcards"]


@pytest.mark.parametrize(
    "typ", ["kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBindingPatch", "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding"]
)
@pytest.mark.parametrize(
    "change",
    [
        {"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"}},
        {"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"}},
        {"subjects": [{"kind": "Group", "name": "system:unauthenticated", "apiGroup": "rbac.authorization.k8s.io"}]},
        {"subjects": [{"kind": "User", "name": "system:anonymous", "apiGroup": "rbac.authorization.k8s.io"}]},
        {"subjects": [{"kind": "Group", "name": "system:authenticated", "apiGroup": "rbac.authorization.k8s.io"}]},
        {"subjects": [{"kind": "Group", "name": "system:serviceaccounts", "apiGroup": "rbac.authorization.k8s.io"}]},
    ],
)
def test_bindings_to_superuser_roles_or_everyone_are_rejected(pack: PolicyPack, typ: str, change: dict) -> None:
    base = {
        "metadata": {"name": "b", "namespace": "ns"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "gitlab-runner-executor"},
        "subjects": [{"kind": "ServiceAccount", "name": "gitlab-runner-manager", "namespace": "gitlab-runner"}],
    }
    assert mandatory_of(pack, typ, base) == []
    assert mandatory_of(pack, typ, {**base, **change}) == ["kubernetes-rbac-no-cluster-admin"]


# --- Class 7: IAM as AWS evaluates it ------------------------------------------------------------

POLICY = "aws:iam/policy:Policy"
ROLE = "aws:iam/role:Role"
REPO_ARN = "arn:aws:ecr:eu-west-1:123456789012:repository/acme/web"
GOOD_DOC = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": ["ecr:GetAuthorizationToken"], "Resource": "*"},
        {"Effect": "Allow", "Action": ["ecr:PutImage"], "Resource": [REPO_ARN]},
    ],
}


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        ({"Effect": "Allow", "Action": "iam:Pass????", "Resource": REPO_ARN}, ["aws-iam-no-wildcard-actions"]),
        ({"Effect": "Allow", "Action": "ecr:?utImage", "Resource": REPO_ARN}, ["aws-iam-no-wildcard-actions"]),
        ({"Effect": "Allow", "Action": "ECR:getauthorizationtoken", "Resource": "*"}, []),  # case-insensitive: still account-level only
        (
            {"Effect": "Allow", "Action": "ecr:GetAuthorizationToke?", "Resource": "*"},
            ["aws-iam-no-wildcard-actions", "aws-iam-no-wildcard-resources"],
        ),
        (
            {"Effect": "Allow", "Action": "ecr:PutImage", "Resource": "arn:aws:ecr:eu-west-1:123456789012:repository/acme/we?"},
            ["aws-iam-no-wildcard-resources"],
        ),
        ({"Effect": "allow", "NotAction": "iam:*", "Resource": REPO_ARN}, ["aws-iam-no-wildcard-actions"]),
    ],
)
def test_iam_patterns_are_read_case_insensitively_with_both_wildcards(pack: PolicyPack, statement: dict, expected: list[str]) -> None:
    assert mandatory_of(pack, POLICY, {"name": "p", "policy": json.dumps(GOOD_DOC)}) == []
    doc = {**GOOD_DOC, "Statement": [*GOOD_DOC["Statement"], statement]}
    assert mandatory_of(pack, POLICY, {"name": "p", "policy": json.dumps(doc)}) == expected


@pytest.mark.parametrize("typ", [ROLE, "aws:iam/user:User", "aws:iam/group:Group"])
def test_inline_policies_get_every_document_check(pack: PolicyPack, typ: str) -> None:
    statement = {"Effect": "Allow", "Action": "ecr:PutImage", "Resource": "*"}
    props: dict[str, Any] = {"name": "x", "inlinePolicies": [{"name": "inline", "policy": json.dumps({"Statement": [statement]})}]}
    if typ == ROLE:
        props["assumeRolePolicy"] = json.dumps(trust())
    assert mandatory_of(pack, typ, props) == ["aws-iam-no-wildcard-resources"]


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:iam::aws:policy/AdministratorAccess",
        "arn:aws-cn:iam::aws:policy/AdministratorAccess",
        "arn:aws-us-gov:iam::aws:policy/PowerUserAccess",
        "arn:aws:iam::aws:policy/iamfullaccess",
    ],
)
@pytest.mark.parametrize(
    ("typ", "field"),
    [
        ("aws:iam/rolePolicyAttachment:RolePolicyAttachment", "policyArn"),
        ("aws:iam/role:Role", "managedPolicyArns"),
        ("aws:iam/rolePolicyAttachmentsExclusive:RolePolicyAttachmentsExclusive", "policyArns"),
    ],
)
def test_admin_policies_are_recognised_in_every_partition_and_place(pack: PolicyPack, arn: str, typ: str, field: str) -> None:
    props: dict[str, Any] = {field: arn if field == "policyArn" else [arn]}
    if typ == ROLE:
        props["assumeRolePolicy"] = json.dumps(trust())
    assert mandatory_of(pack, typ, props) == ["aws-iam-no-admin"]


def trust(**condition_overrides: Any) -> dict[str, Any]:
    condition = {
        "StringEquals": {
            "gitlab.example.com:aud": "https://gitlab.example.com",
            "gitlab.example.com:sub": ["project_path:acme/web:ref_type:branch:ref:main"],
        }
    }
    condition.update(condition_overrides)
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": "arn:aws:iam::123456789012:oidc-provider/gitlab.example.com"},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": condition,
            }
        ],
    }


def with_statement(**changes: Any) -> dict[str, Any]:
    doc = trust()
    doc["Statement"][0].update(changes)
    return doc


AUD = {"gitlab.example.com:aud": "https://gitlab.example.com"}


@pytest.mark.parametrize(
    "document",
    [
        with_statement(Principal="*"),
        with_statement(Principal={"AWS": "*"}),
        with_statement(Principal={"AWS": "arn:aws:iam::*:root"}),
        {"Statement": [{"Effect": "Allow", "NotPrincipal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "sts:AssumeRole"}]},
        # the web-identity action spelled otherwise, or covered by a pattern, without conditions
        with_statement(Action="sts:assumerolewithwebidentity", Condition={}),
        with_statement(Action="sts:*", Condition={}),
        with_statement(Action="sts:AssumeRoleWith*", Condition={}),
        # sub constrained only negatively, or not at all
        trust(StringEquals=AUD, StringNotEquals={"gitlab.example.com:sub": "project_path:evil/x:ref_type:branch:ref:main"}),
        trust(StringEquals=AUD, Null={"gitlab.example.com:sub": "false"}),
        trust(StringEquals=AUD, StringLikeIfExists={"gitlab.example.com:sub": "project_path:acme/web:ref_type:branch:ref:main"}),
        trust(StringEquals=AUD, **{"ForAllValues:StringLike": {"gitlab.example.com:sub": "project_path:acme/web:*"}}),
        # a wildcard before :ref: lets other projects in
        trust(StringEquals=AUD, StringLike={"gitlab.example.com:sub": "project_path:acme/*:ref_type:branch:ref:main"}),
        trust(StringEquals=AUD, StringLike={"gitlab.example.com:sub": "project_path:acme/web:ref_type:*:ref:main"}),
        trust(StringEquals=AUD, StringLike={"gitlab.example.com:sub": "project_path:acme/we?:ref_type:branch:ref:main"}),
        trust(StringEquals=AUD, StringLike={"gitlab.example.com:sub": "*"}),
        # audience unconstrained or a pattern
        trust(StringEquals={"gitlab.example.com:sub": "project_path:acme/web:ref_type:branch:ref:main"}),
        trust(
            StringEquals={"gitlab.example.com:sub": "project_path:acme/web:ref_type:branch:ref:main"},
            StringLike={"gitlab.example.com:aud": "*"},
        ),
    ],
)
def test_trust_policy_escapes_are_rejected(pack: PolicyPack, document: dict) -> None:
    assert mandatory_of(pack, ROLE, {"name": "r", "assumeRolePolicy": json.dumps(trust())}) == []
    assert mandatory_of(pack, ROLE, {"name": "r", "assumeRolePolicy": json.dumps(document)}) == ["aws-iam-oidc-trust-sub"]


def test_a_ref_pattern_with_string_like_is_left_to_the_stack_config(pack: PolicyPack) -> None:
    """The pack cannot know the environment: a wildcard inside the ref is judged by the config model."""
    document = trust(StringEquals=AUD, StringLike={"gitlab.example.com:sub": "project_path:acme/web:ref_type:branch:ref:release/*"})
    assert mandatory_of(pack, ROLE, {"name": "r", "assumeRolePolicy": json.dumps(document)}) == []


REPOSITORY_POLICY = "aws:ecr/repositoryPolicy:RepositoryPolicy"
PULL = {"Sid": "Pull", "Effect": "Allow", "Principal": {"AWS": ["arn:aws:iam::210987654321:root"]}, "Action": ["ecr:BatchGetImage"]}


@pytest.mark.parametrize(
    "statement",
    [
        {**PULL, "Principal": "*"},
        {**PULL, "Principal": {"AWS": "*"}},
        {**PULL, "Principal": {"AWS": ["arn:aws:iam::210987654321:role/*"]}},
        {**PULL, "Action": ["ecr:PutImage"]},
        {**PULL, "Action": ["ecr:*"]},
        {**PULL, "Action": ["ecr:BatchGet*"]},
        {**PULL, "Action": ["ecr:DeleteRepository"]},
    ],
)
def test_repository_policies_only_let_named_principals_pull(pack: PolicyPack, statement: dict) -> None:
    assert mandatory_of(pack, REPOSITORY_POLICY, {"repository": "acme/web", "policy": json.dumps({"Statement": [PULL]})}) == []
    assert mandatory_of(pack, REPOSITORY_POLICY, {"repository": "acme/web", "policy": json.dumps({"Statement": [statement]})}) == [
        "aws-ecr-resource-policies"
    ]


def test_registry_policies_only_let_named_principals_replicate(pack: PolicyPack) -> None:
    good = {
        "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::210987654321:root"},
        "Action": ["ecr:ReplicateImage", "ecr:CreateRepository"],
    }
    typ = "aws:ecr/registryPolicy:RegistryPolicy"
    assert mandatory_of(pack, typ, {"policy": json.dumps({"Statement": [good]})}) == []
    assert mandatory_of(pack, typ, {"policy": json.dumps({"Statement": [{**good, "Principal": "*"}]})}) == ["aws-ecr-resource-policies"]
    assert mandatory_of(pack, typ, {"policy": json.dumps({"Statement": [{**good, "Action": ["ecr:PutImage"]}]})}) == [
        "aws-ecr-resource-policies"
    ]


REPO = "aws:ecr/repository:Repository"
REPO_BASE = {
    "name": "acme/web",
    "imageScanningConfiguration": {"scanOnPush": True},
    "encryptionConfigurations": [{"encryptionType": "AES256"}],
    "imageTagMutability": "IMMUTABLE",
    "tags": {"gitlab-buildkit-runner/repository-role": "application"},
}
EXCLUDE = "IMMUTABLE_WITH_EXCLUSION"


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"imageTagMutability": EXCLUDE, "imageTagMutabilityExclusionFilters": [{"filter": "*", "filterType": "WILDCARD"}]},
            ["aws-ecr-immutable-tags"],
        ),
        (
            {"imageTagMutability": EXCLUDE, "imageTagMutabilityExclusionFilters": [{"filter": "v*", "filterType": "WILDCARD"}]},
            ["aws-ecr-immutable-tags"],
        ),
        (
            {"imageTagMutability": EXCLUDE, "imageTagMutabilityExclusionFilters": [{"filter": "cache-*", "filterType": "WILDCARD"}]},
            ["aws-ecr-immutable-tags"],
        ),
        # the marked cache repository may exclude its cache-* tags, and nothing wider
        (
            {
                "imageTagMutability": EXCLUDE,
                "imageTagMutabilityExclusionFilters": [{"filter": "cache-*", "filterType": "WILDCARD"}],
                "tags": {"gitlab-buildkit-runner/repository-role": "buildkit-cache"},
            },
            [],
        ),
        (
            {
                "imageTagMutability": EXCLUDE,
                "imageTagMutabilityExclusionFilters": [{"filter": "*", "filterType": "WILDCARD"}],
                "tags": {"gitlab-buildkit-runner/repository-role": "buildkit-cache"},
            },
            ["aws-ecr-immutable-tags"],
        ),
    ],
)
def test_exclusion_filters_do_not_count_as_immutable(pack: PolicyPack, changes: dict, expected: list[str]) -> None:
    assert mandatory_of(pack, REPO, REPO_BASE) == []
    assert mandatory_of(pack, REPO, {**REPO_BASE, **changes}) == expected
