"""Escape routes around the pack, class by class, through its real gRPC protocol: a compliant baseline,
then one property changed, and the exact mandatory violations. Several variants per class."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from test_policy_pack import COMPLIANT_POD, first, wrap

from verify.policy_client import PolicyPack

pytestmark = pytest.mark.xdist_group("policy-pack")


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


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        # Regression: -version labels were skipped, so a patch could pin PSA to a release that does not
        # check seccomp at baseline (v1.18) while keeping the level.
        ({f"{PSA}/enforce": "restricted", f"{PSA}/enforce-version": "v1.18"}, ["kubernetes-namespace-psa-labels"]),
        ({f"{PSA}/enforce-version": "v1.32"}, ["kubernetes-namespace-psa-labels"]),
        ({f"{PSA}/audit-version": "v1.0"}, ["kubernetes-namespace-psa-labels"]),
        ({f"{PSA}/warn-version": "v1.033"}, ["kubernetes-namespace-psa-labels"]),  # not a version PSA parses
        ({f"{PSA}/enforce-version": "1.34"}, ["kubernetes-namespace-psa-labels"]),
        ({f"{PSA}/enforce-version": "v1.33"}, []),
        ({f"{PSA}/enforce-version": "v1.40"}, []),
        ({f"{PSA}/enforce-version": "latest"}, []),  # on a patch: the newest checks
    ],
)
def test_namespace_patches_never_lower_the_pod_security_version(pack: PolicyPack, labels: dict, expected: list[str]) -> None:
    props = {"metadata": {"name": "kube-system", "labels": labels}}
    assert mandatory_of(pack, NS + "Patch", props) == expected


@pytest.mark.parametrize(
    ("label", "value", "refused"),
    [
        ("enforce-version", "v1.25", True),
        ("enforce-version", "latest", True),  # the stack's own namespaces pin what they were tested with
        ("audit-version", "v1.18", True),
        ("warn-version", "v1.9", True),
        ("warn-version", "latest", False),
        ("enforce-version", "v1.34", False),
    ],
)
def test_the_stacks_namespaces_name_no_old_pod_security_version(pack: PolicyPack, label: str, value: str, refused: bool) -> None:
    labels = {f"{PSA}/enforce": "baseline", f"{PSA}/enforce-version": "v1.33", f"{PSA}/{label}": value}
    props = {"metadata": {"name": "gitlab-runner-jobs", "labels": labels}}
    assert mandatory_of(pack, NS, props) == (["kubernetes-namespace-psa-labels"] if refused else [])


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


def _two_statements(second_operator: str, second_sub: str) -> dict[str, Any]:
    doc = trust()
    extra = copy.deepcopy(doc["Statement"][0])
    extra["Condition"] = {"StringEquals": dict(AUD)}
    extra["Condition"].setdefault(second_operator, {})["gitlab.example.com:sub"] = second_sub
    doc["Statement"].append(extra)
    return doc


WEB_MAIN = "project_path:acme/web:ref_type:branch:ref:main"
API_MAIN = "project_path:acme/api:ref_type:branch:ref:main"


@pytest.mark.parametrize(
    "document",
    [
        # Regression: each value named one project exactly, so a trust naming two passed.
        trust(StringEquals={**AUD, "gitlab.example.com:sub": [WEB_MAIN, API_MAIN]}),
        trust(StringEquals=AUD, **{"ForAnyValue:StringEquals": {"gitlab.example.com:sub": [WEB_MAIN, API_MAIN]}}),
        _two_statements("StringEquals", API_MAIN),
        _two_statements("StringLike", "project_path:acme/api:ref_type:branch:ref:release/*"),
        _two_statements("ForAnyValue:StringLike", "project_path:ACME/web:ref_type:branch:ref:main"),  # another spelling is another sub
    ],
)
def test_a_trust_names_one_project(pack: PolicyPack, document: dict) -> None:
    assert mandatory_of(pack, ROLE, {"name": "r", "assumeRolePolicy": json.dumps(document)}) == ["aws-iam-oidc-trust-sub"]


def test_one_project_may_be_trusted_for_several_refs_and_statements(pack: PolicyPack) -> None:
    document = _two_statements("StringEquals", "project_path:acme/web:ref_type:tag:ref:v1.0.0")
    document["Statement"][0]["Condition"]["StringEquals"]["gitlab.example.com:sub"].append("project_path:acme/web:ref_type:branch:ref:dev")
    assert mandatory_of(pack, ROLE, {"name": "r", "assumeRolePolicy": json.dumps(document)}) == []


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


# --- Classes 2-5: the runner release ---------------------------------------------------------------

from test_policy_pack import RELEASE, replace, runner_toml_edit, stack_resources  # noqa: E402

from verify.harness import run_stack  # noqa: E402
from verify.policy_client import ResourceInput  # noqa: E402


@pytest.fixture(scope="module")
def dev_stack() -> list[ResourceInput]:
    return stack_resources(run_stack("dev"))


def stack_mandatory(pack: PolicyPack, resources: list[ResourceInput]) -> list[str]:
    return sorted({d.policy for d in pack.analyze_all(resources) if d.level == "mandatory"})


def release_change(change: Any) -> Any:
    def apply(props: dict[str, Any]) -> None:
        change(props)

    return apply


@pytest.mark.parametrize(
    "change",
    [
        lambda p: p.update(chart="./charts/gitlab-runner"),  # a local copy of the same chart
        lambda p: p.update(chart="gitlab-runner-0.86.0.tgz"),
        lambda p: p.update(chart="oci://registry.example.com/charts/gitlab-runner"),
        lambda p: p.update(version="0.87.0"),
        lambda p: p.update(repositoryOpts={"repo": "https://charts.example.com"}),
        lambda p: p.update(chart="other/gitlab-runner"),
    ],
)
def test_runner_chart_only_from_the_allow_listed_source(pack: PolicyPack, dev_stack: list[ResourceInput], change: Any) -> None:
    assert stack_mandatory(pack, dev_stack) == []
    assert stack_mandatory(pack, replace(dev_stack, RELEASE, change)) == ["helm-release-allow-listed"]


@pytest.mark.parametrize(
    "values",
    [
        {"securityContext": {"privileged": True}},  # any other chart turning on privileged
        {"podSecurityPolicy": {"enabled": True}},
        {},
    ],
)
def test_other_charts_are_not_allow_listed(pack: PolicyPack, values: dict) -> None:
    props = {"chart": "nginx", "version": "1.0.0", "repositoryOpts": {"repo": "https://charts.example.com"}, "values": values}
    for typ in (RELEASE, "kubernetes:helm.sh/v4:Chart", "kubernetes:helm.sh/v3:Chart"):
        assert mandatory_of(pack, typ, props) == ["helm-release-allow-listed"]


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda v: v.update(envVars=[{"name": "KUBERNETES_PRIVILEGED", "value": "true"}]), "values.envVars"),
        (lambda v: v.update(extraEnv={"KUBERNETES_CAP_ADD": "SYS_ADMIN"}), "values.extraEnv"),
        (lambda v: v.update(extraEnvFrom={"X": {"secretKeyRef": {"name": "s", "key": "k"}}}), "values.extraEnvFrom"),
        (lambda v: v.update(extraObjects=[{"apiVersion": "v1", "kind": "Pod"}]), "values.extraObjects"),
        (lambda v: v.update(extraContainers=[{"name": "x", "securityContext": {"privileged": True}}]), "values.extraContainers"),
        (lambda v: v["runners"].update(configPath="/etc/gitlab-runner/other.toml"), "values.runners.configPath"),
        (lambda v: v["rbac"].update(create=True), "values.rbac.create must be False"),
        (lambda v: v["rbac"].update(clusterWideAccess=True), "values.rbac.clusterWideAccess"),
        (lambda v: v.update(hostNetwork=True), "values.hostNetwork"),
        (
            lambda v: v["securityContext"].update(capabilities={"add": ["SYS_ADMIN"], "drop": ["ALL"]}),
            "values.securityContext.capabilities.add",
        ),
        (
            lambda v: v["podAnnotations"].update({"container.apparmor.security.beta.kubernetes.io/gitlab-runner": "unconfined"}),
            "values.podAnnotations.container.apparmor",
        ),
        (
            lambda v: v.update(image={"registry": "evil.example", "image": "gitlab-org/gitlab-runner", "tag": "x"}),
            "values.image.registry must be",
        ),
        (lambda v: v["resources"]["limits"].update({"nvidia.com/gpu": "1"}), "values.resources.limits.nvidia.com/gpu"),
    ],
)
def test_runner_values_outside_the_allow_list_are_rejected(
    pack: PolicyPack, dev_stack: list[ResourceInput], change: Any, fragment: str
) -> None:
    changed = replace(dev_stack, RELEASE, lambda p: change(p["values"]))
    found = [d for d in pack.analyze_all(changed) if d.level == "mandatory"]
    assert "gitlab-runner-values-allow-listed" in {d.policy for d in found}
    assert any(fragment in d.message for d in found if d.policy == "gitlab-runner-values-allow-listed"), [d.message for d in found]


@pytest.mark.parametrize("field", ["valueYamlFiles", "postrender"])
def test_release_inputs_the_pack_cannot_read_are_rejected(pack: PolicyPack, dev_stack: list[ResourceInput], field: str) -> None:
    value = ["values-override.yaml"] if field == "valueYamlFiles" else "/usr/local/bin/kustomize-wrapper"
    changed = replace(dev_stack, RELEASE, lambda p: p.update({field: value}))
    assert stack_mandatory(pack, changed) == ["gitlab-runner-values-allow-listed"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda p: p.update(namespace="kube-system"), ["gitlab-runner-namespaces"]),
        (lambda p: p["values"]["runners"].update(jobNamespace="default"), ["gitlab-runner-namespaces"]),
        (lambda p: p["values"]["runners"].update(jobNamespace="gitlab-runner"), ["gitlab-runner-namespaces"]),
        (runner_toml_edit(lambda t: t.replace('namespace = "gitlab-runner-jobs"', 'namespace = "kube-system"')), None),
    ],
)
def test_runner_pods_stay_in_the_stacks_namespaces(
    pack: PolicyPack, dev_stack: list[ResourceInput], change: Any, expected: list[str] | None
) -> None:
    found = stack_mandatory(pack, replace(dev_stack, RELEASE, change))
    assert "gitlab-runner-namespaces" in found
    if expected is not None:
        assert found == expected


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        # BurntSushi/toml matches keys case-insensitively: these take effect in the runner
        (lambda t: t.replace("privileged = false\n", "Privileged = true\n", 1), ["gitlab-runner-privileged"]),
        (
            lambda t: t.replace("runners.kubernetes", "runners.Kubernetes").replace("privileged = false\n", "privileged = true\n", 1),
            ["gitlab-runner-privileged"],
        ),
        (lambda t: t.replace("privileged = false\n", 'privileged = false\nCap_Add = ["SYS_ADMIN"]\n', 1), ["gitlab-runner-capabilities"]),
        # Kelvin sign and long s fold like k and s in Go's EqualFold
        (lambda t: t.replace("privileged = false\n", '"\u212aubernetes_privileged_typo" = 1\n', 1), ["gitlab-runner-config-understood"]),
        (
            lambda t: t.replace("privileged = false\n", 'privileged = false\n"NAMESPACE_OVERWRITE_ALLOWED" = ".*"\n', 1),
            ["gitlab-runner-overwrites"],
        ),
        # the same key twice in two spellings: which one wins is the decoder's business
        (lambda t: t.replace("privileged = false\n", "privileged = false\nPRIVILEGED = false\n", 1), None),
        # settings the pack does not model
        (lambda t: t.replace("privileged = false\n", "privileged = false\nhost_aliases = []\n", 1), ["gitlab-runner-config-understood"]),
        (lambda t: t + '\n[[runners.kubernetes.volumes.pvc]]\nname = "x"\nmount_path = "/x"\n', ["gitlab-runner-config-understood"]),
        # Helm template actions in runners.config: rendered by the chart's tpl before the runner reads it
        (lambda t: t + "\n{{ .Values.injected }}\n", None),
        (lambda t: t.replace("privileged = false\n", 'privileged = {{ "true" }}\n', 1), None),
        (lambda t: t + "\n{{- /* hidden */ -}}\n", None),
    ],
)
def test_runner_config_is_read_as_the_runner_reads_it(
    pack: PolicyPack, dev_stack: list[ResourceInput], edit: Any, expected: list[str] | None
) -> None:
    found = stack_mandatory(pack, replace(dev_stack, RELEASE, runner_toml_edit(edit)))
    if expected is None:  # unreadable: every check that reads the config fails closed
        assert {"gitlab-runner-privileged", "gitlab-runner-config-understood", "gitlab-runner-unconfined-profiles"} <= set(found)
    else:
        assert found == expected


def pod_spec_patch(name: str, patch: str, patch_type: str = "strategic") -> Any:
    block = f'\n[[runners.kubernetes.pod_spec]]\nname = "{name}"\npatch_type = "{patch_type}"\npatch = {json.dumps(patch)}\n'
    return runner_toml_edit(lambda t: t + block)


@pytest.mark.parametrize(
    ("patch", "patch_type", "expected"),
    [
        ('{"containers": [{"name": "build", "securityContext": {"privileged": true}}]}', "strategic", ["gitlab-runner-pod-spec-patches"]),
        (
            '{"containers": [{"name": "sidecar", "image": "docker:dind", "securityContext": {"privileged": true}}]}',
            "strategic",
            ["gitlab-runner-pod-spec-patches"],
        ),
        ("hostPID: true", "strategic", ["gitlab-runner-pod-spec-patches"]),
        ("volumes:\n- name: root\n  hostPath:\n    path: /\n", "strategic", ["gitlab-runner-pod-spec-patches"]),
        ('{"hostNetwork": true}', "merge", ["gitlab-runner-pod-spec-patches"]),
        (
            '[{"op": "add", "path": "/containers/0/securityContext/capabilities/add", "value": ["SYS_ADMIN"]}]',
            "json",
            ["gitlab-runner-pod-spec-patches"],
        ),
        (
            '[{"op": "replace", "path": "/initContainers/0/securityContext/privileged", "value": true}]',
            "json",
            ["gitlab-runner-pod-spec-patches"],
        ),
        # Unconfined spelled with escapes is still Unconfined once decoded
        (
            '{"containers": [{"name": "helper", "securityContext": {"seccompProfile": {"type": "\\u0055nconfined"}}}]}',
            "strategic",
            ["gitlab-runner-unconfined-profiles"],
        ),
        ('{"securityContext": {"appArmorProfile": {"type": "Unconfined"}}}', "merge", ["gitlab-runner-unconfined-profiles"]),
        # what the pack cannot apply exactly
        ('{"$patch": "replace", "containers": []}', "strategic", ["gitlab-runner-pod-spec-patches"]),
        ('[{"op": "add", "path": "/nonexistent/x", "value": 1}]', "json", ["gitlab-runner-pod-spec-patches"]),
        ("{unclosed", "strategic", ["gitlab-runner-pod-spec-patches"]),
        ('{"hostIPC": true}', "yaml-patch", ["gitlab-runner-pod-spec-patches"]),
    ],
)
def test_pod_spec_patches_are_applied_to_the_job_pod(
    pack: PolicyPack, dev_stack: list[ResourceInput], patch: str, patch_type: str, expected: list[str]
) -> None:
    assert stack_mandatory(pack, replace(dev_stack, RELEASE, pod_spec_patch("p", patch, patch_type))) == expected


def test_a_harmless_patch_passes(pack: PolicyPack, dev_stack: list[ResourceInput]) -> None:
    patch = '{"containers": [{"name": "build", "env": [{"name": "X", "value": "1"}]}], "priorityClassName": "ci"}'
    assert stack_mandatory(pack, replace(dev_stack, RELEASE, pod_spec_patch("env", patch))) == []


# --- Class 8: NetworkPolicy semantics ---------------------------------------------------------------

NETPOL = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
JOBS = "gitlab-runner-jobs"


def add_policy(
    resources: list[ResourceInput], spec: dict[str, Any], *, typ: str = NETPOL, namespace: str | None = JOBS, provider: dict | None = None
) -> list[ResourceInput]:
    metadata: dict[str, Any] = {"name": "extra"}
    if namespace is not None:
        metadata["namespace"] = namespace
    extra = ResourceInput(
        typ, "extra", f"urn:pulumi:dev::p::{typ}::extra", {"metadata": metadata, "spec": spec}, provider, "pulumi:providers:kubernetes"
    )
    return [*resources, extra]


ALL_PODS: dict[str, Any] = {"podSelector": {}}
SOME_PODS: dict[str, Any] = {"podSelector": {"matchLabels": {"pod": "runner-build"}}}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        # missing policyTypes: Egress is implied by the egress rules
        ({**SOME_PODS, "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]}, ["kubernetes-job-egress-blocks-metadata"]),
        # an empty `to` admits every destination
        (
            {**ALL_PODS, "policyTypes": ["Egress"], "egress": [{"to": [], "ports": [{"port": 80}]}]},
            ["kubernetes-job-egress-blocks-metadata"],
        ),
        ({**SOME_PODS, "policyTypes": ["Egress"], "egress": [{}]}, ["kubernetes-job-egress-blocks-metadata"]),
        # the Pod Identity agent (169.254.170.23) and IPv6 IMDS are metadata too
        (
            {**ALL_PODS, "policyTypes": ["Egress"], "egress": [{"to": [{"ipBlock": {"cidr": "169.254.170.0/24"}}]}]},
            ["kubernetes-job-egress-blocks-metadata"],
        ),
        (
            {**ALL_PODS, "policyTypes": ["Egress"], "egress": [{"to": [{"ipBlock": {"cidr": "fd00:ec2::/64"}}]}]},
            ["kubernetes-job-egress-blocks-metadata"],
        ),
        # ingress: missing policyTypes means Ingress; an empty `from`, or namespaceSelector {}, admits everyone
        ({**SOME_PODS, "ingress": [{}]}, ["kubernetes-job-deny-ingress"]),
        ({**ALL_PODS, "ingress": [{"from": [{"namespaceSelector": {}}]}]}, ["kubernetes-job-deny-ingress"]),
        ({**ALL_PODS, "policyTypes": ["Ingress"], "ingress": [{"from": []}]}, ["kubernetes-job-deny-ingress"]),
        # harmless additions: more denial, or egress to pods only
        ({**ALL_PODS, "policyTypes": ["Ingress", "Egress"]}, []),
        (
            {
                **ALL_PODS,
                "policyTypes": ["Egress"],
                "egress": [{"to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "cache"}}}]}],
            },
            [],
        ),
    ],
)
def test_network_policies_are_judged_as_their_union_with_kubernetes_defaults(
    pack: PolicyPack, dev_stack: list[ResourceInput], spec: dict, expected: list[str]
) -> None:
    assert stack_mandatory(pack, add_policy(dev_stack, spec)) == expected


def test_network_policy_patches_count_too(pack: PolicyPack, dev_stack: list[ResourceInput]) -> None:
    spec = {**ALL_PODS, "policyTypes": ["Egress"], "egress": [{}]}
    assert stack_mandatory(pack, add_policy(dev_stack, spec, typ=NETPOL + "Patch")) == ["kubernetes-job-egress-blocks-metadata"]


def test_a_policy_without_namespace_lands_in_the_providers_namespace(pack: PolicyPack, dev_stack: list[ResourceInput]) -> None:
    spec = {**ALL_PODS, "policyTypes": ["Egress"], "egress": [{}]}
    assert stack_mandatory(pack, add_policy(dev_stack, spec, namespace=None, provider={"namespace": JOBS})) == [
        "kubernetes-job-egress-blocks-metadata"
    ]
    # without a provider namespace it lands in `default`, and does not touch the job pods
    assert stack_mandatory(pack, add_policy(dev_stack, spec, namespace=None, provider={})) == []


def test_isolation_needs_a_policy_selecting_every_pod(pack: PolicyPack, dev_stack: list[ResourceInput]) -> None:
    narrowed = replace(dev_stack, NETPOL, lambda p: p["spec"].update(podSelector={"matchLabels": {"x": "y"}}), "runner-restrict-egress")
    assert stack_mandatory(pack, narrowed) == ["kubernetes-job-egress-blocks-metadata"]
