"""The real program (__main__.main) under Pulumi mocks: types, names, parents, providers, secrets, protection."""

from __future__ import annotations

import json

import pytest
from conftest import make_config

from components.aws_documents import PUSH_ACTIONS
from components.config import ConfigError
from verify.harness import (
    MOCK_RUNNER_TOKEN,
    MOCK_SECRET_ACCESS_KEY,
    ProgramRun,
    RecordingMonitor,
    StackMocks,
    run_program,
    run_stack,
)

STACK = "urn:pulumi:dev::gitlab-buildkit-runner::pulumi:pulumi:Stack::gitlab-buildkit-runner-dev"

PREVIEW = {"projectPath": "acme/gitlab-buildkit-runner", "refs": ["infra/*"], "stateBucket": "acme-pulumi-state"}


@pytest.fixture(scope="module")
def run() -> ProgramRun:
    return run_program(make_config(), stack="dev")


def names(run: ProgramRun, typ: str) -> list[str]:
    return sorted(r.name for r in run.of_type(typ))


def parent_type(run: ProgramRun, reg) -> str:
    return run.by_urn(reg.parent).type if reg.parent != STACK else "stack"


def test_components_and_their_children(run: ProgramRun) -> None:
    expected_children = {
        "gitlab-buildkit-runner:kubernetes:RunnerNamespaces": {
            ("kubernetes:core/v1:Namespace", "runner-manager"),
            ("kubernetes:core/v1:Namespace", "runner-jobs"),
            ("kubernetes:core/v1:LimitRange", "runner-job-limits"),
            ("kubernetes:scheduling.k8s.io/v1:PriorityClass", "runner-job-priority"),
        },
        "gitlab-buildkit-runner:kubernetes:RunnerRbac": {
            ("kubernetes:core/v1:ServiceAccount", "runner-manager"),
            ("kubernetes:core/v1:ServiceAccount", "runner-job"),
            ("kubernetes:rbac.authorization.k8s.io/v1:Role", "runner-executor"),
            ("kubernetes:rbac.authorization.k8s.io/v1:RoleBinding", "runner-executor"),
        },
        "gitlab-buildkit-runner:kubernetes:NetworkIsolation": {
            ("kubernetes:networking.k8s.io/v1:NetworkPolicy", n)
            for n in ("runner-deny-ingress", "runner-restrict-egress", "runner-manager-ingress", "runner-manager-egress")
        },
        "gitlab-buildkit-runner:runner:GitlabRunner": {
            ("gitlab:index/userRunner:UserRunner", "buildkit-runner"),
            ("kubernetes:core/v1:Secret", "buildkit-token"),
            ("kubernetes:helm.sh/v3:Release", "buildkit-release"),
        },
    }
    for component_type, children in expected_children.items():
        (component,) = run.of_type(component_type)
        assert component.parent == STACK
        actual = {(r.type, r.name) for r in run.resources if r.parent == component.urn}
        assert actual == children, component_type


def test_every_custom_resource_uses_an_explicit_provider(run: ProgramRun) -> None:
    for reg in run.resources:
        if not reg.custom or reg.type.startswith("pulumi:providers:"):
            continue
        package = reg.type.split(":")[0]
        assert f"$pulumi:providers:{package}::{package}::" in reg.provider, (reg.type, reg.provider)


def test_namespaces_and_rbac_inputs(run: ProgramRun) -> None:
    jobs = run.one("kubernetes:core/v1:Namespace", "runner-jobs").inputs["metadata"]
    assert jobs["name"] == "gitlab-runner-jobs"
    assert jobs["labels"]["pod-security.kubernetes.io/enforce"] == "baseline"
    binding = run.one("kubernetes:rbac.authorization.k8s.io/v1:RoleBinding").inputs
    assert binding["metadata"]["namespace"] == "gitlab-runner-jobs"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "gitlab-runner-manager", "namespace": "gitlab-runner"}]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "gitlab-runner-executor"}
    job_sa = run.one("kubernetes:core/v1:ServiceAccount", "runner-job").inputs
    assert job_sa["automountServiceAccountToken"] is False


def test_user_runner_inputs(run: ProgramRun) -> None:
    runner = run.one("gitlab:index/userRunner:UserRunner").inputs
    assert runner == {
        "runnerType": "project_type",
        "projectId": 42,
        "description": "rootless BuildKit runner (dev)",
        "tagLists": ["buildkit", "dev"],
        "untagged": False,
        "accessLevel": "not_protected",
        "locked": True,
        "maximumTimeout": 3600,
    }


def test_runner_token_reaches_the_secret_as_a_secret_and_nowhere_else(run: ProgramRun) -> None:
    secret = run.one("kubernetes:core/v1:Secret")
    assert secret.inputs["stringData"] == {"runner-token": MOCK_RUNNER_TOKEN, "runner-registration-token": ""}
    assert "stringData" in secret.secret_paths()
    assert "token" in run.one("gitlab:index/userRunner:UserRunner").additional_secret_outputs
    for reg in run.resources:
        if reg is secret:
            continue
        assert MOCK_RUNNER_TOKEN not in json.dumps(reg.raw_inputs), reg.type
    assert MOCK_RUNNER_TOKEN not in json.dumps(run.outputs, default=str)


def test_release_inputs(run: ProgramRun) -> None:
    release = run.one("kubernetes:helm.sh/v3:Release")
    inputs = release.inputs
    assert (inputs["chart"], inputs["version"], inputs["name"], inputs["namespace"]) == (
        "gitlab-runner",
        "0.86.0",
        "gitlab-runner",
        "gitlab-runner",
    )
    assert inputs["repositoryOpts"] == {"repo": "https://charts.gitlab.io"}
    assert inputs["values"]["runners"]["secret"] == "gitlab-runner-token"
    assert inputs["values"]["serviceAccount"] == {"create": False, "name": "gitlab-runner-manager"}
    assert inputs["values"]["podAnnotations"] == {"gitlab-buildkit-runner/runner-id": "4242"}
    assert release.secret_paths() == set()
    secret_urn = run.one("kubernetes:core/v1:Secret").urn
    assert secret_urn in release.dependencies


def test_ecr_repositories_and_lifecycles(run: ProgramRun) -> None:
    repos = {r.inputs["name"]: r for r in run.of_type("aws:ecr/repository:Repository")}
    caches = ["buildkit-cache/acme-api", "buildkit-cache/acme-web"]
    assert sorted(repos) == ["api", *caches, "web"]
    for name, repo in repos.items():
        assert repo.inputs["imageScanningConfiguration"] == {"scanOnPush": True}
        assert repo.inputs["encryptionConfigurations"] == [{"encryptionType": "AES256"}]
        assert repo.inputs["forceDelete"] is False
        assert repo.inputs["imageTagMutability"] == ("MUTABLE" if name in caches else "IMMUTABLE")
        assert repo.protect is False  # dev
    lifecycles = {r.inputs["repository"]: json.loads(r.inputs["policy"]) for r in run.of_type("aws:ecr/lifecyclePolicy:LifecyclePolicy")}
    assert sorted(lifecycles) == ["api", *caches, "web"]
    # release tags first (never expired by the count rule), then untagged, then the count over any tag
    assert [r["selection"]["tagStatus"] for r in lifecycles["web"]["rules"]] == ["tagged", "tagged", "untagged", "any"]
    assert lifecycles["buildkit-cache/acme-web"]["rules"][1]["selection"]["tagPatternList"] == ["cache-*"]
    assert run.of_type("aws:ecr/repositoryPolicy:RepositoryPolicy") == []


def test_each_project_may_push_only_to_its_own_repositories_and_cache(run: ProgramRun) -> None:
    """Regression: one identity could push to every application's repository and the shared cache."""
    policies = {r.inputs["name"]: json.loads(r.inputs["policy"]) for r in run.of_type("aws:iam/policy:Policy")}
    arn = "arn:aws:ecr:eu-west-1:123456789012:repository/{}".format
    for project in ("web", "api"):
        name = f"gitlab-buildkit-push-dev-acme-{project}"
        assert policies[name]["Statement"][1]["Resource"] == sorted([arn(project), arn(f"buildkit-cache/acme-{project}")])
    attachments = {r.inputs["user"]: r.inputs["policyArn"] for r in run.of_type("aws:iam/userPolicyAttachment:UserPolicyAttachment")}
    assert attachments == {
        "gitlab-buildkit-push-dev-acme-web": "arn:aws:iam::123456789012:policy/gitlab-buildkit-push-dev-acme-web",
        "gitlab-buildkit-push-dev-acme-api": "arn:aws:iam::123456789012:policy/gitlab-buildkit-push-dev-acme-api",
    }


def test_applications_of_one_project_share_its_identity_and_cache() -> None:
    apps = [
        {"name": "web", "projectPath": "acme/mono"},
        {"name": "api", "projectPath": "acme/mono"},
        {"name": "ops", "projectPath": "acme/ops"},
    ]
    run = run_program(make_config(registry={"region": "eu-west-1", "applications": apps}))
    policies = {r.inputs["name"]: json.loads(r.inputs["policy"]) for r in run.of_type("aws:iam/policy:Policy")}
    arn = "arn:aws:ecr:eu-west-1:123456789012:repository/{}".format
    assert policies["gitlab-buildkit-push-dev-acme-mono"]["Statement"][1]["Resource"] == sorted(
        [arn("web"), arn("api"), arn("buildkit-cache/acme-mono")]
    )
    assert policies["gitlab-buildkit-push-dev-acme-ops"]["Statement"][1]["Resource"] == sorted([arn("ops"), arn("buildkit-cache/acme-ops")])
    mono = {r.inputs["key"] for r in run.of_type("gitlab:index/projectVariable:ProjectVariable") if r.inputs["project"] == "acme/mono"}
    assert {"ECR_REPOSITORY_WEB", "ECR_REPOSITORY_API"} <= mono and "ECR_REPOSITORY_OPS" not in mono


def test_an_identity_is_denied_on_every_other_projects_repository_and_cache() -> None:
    """Evaluated, not compared: moto's IAM policy evaluator (independent of the pack's matcher) decides
    every ECR action of each project's rendered policy against every repository of the stack, including
    a project whose name extends another's (`web` and `web-evil`), where a prefix wildcard would leak."""
    from moto.iam.access_control import IAMPolicy, PermissionResult

    apps = [
        {"name": "web", "projectPath": "acme/web"},
        {"name": "web-evil", "projectPath": "acme/web-evil"},
        {"name": "api", "projectPath": "acme/api"},
    ]
    run = run_program(make_config(registry={"region": "eu-west-1", "applications": apps}))
    policies = {r.inputs["name"]: IAMPolicy(r.inputs["policy"]) for r in run.of_type("aws:iam/policy:Policy")}
    owner = {
        "web": "web",
        "buildkit-cache/acme-web": "web",
        "web-evil": "web-evil",
        "buildkit-cache/acme-web-evil": "web-evil",
        "api": "api",
        "buildkit-cache/acme-api": "api",
    }
    assert sorted(r.inputs["name"] for r in run.of_type("aws:ecr/repository:Repository")) == sorted(owner)
    arn = "arn:aws:ecr:eu-west-1:123456789012:repository/{}".format
    for project in ("web", "web-evil", "api"):
        policy = policies[f"gitlab-buildkit-push-dev-acme-{project}"]
        assert policy.is_action_permitted("ecr:GetAuthorizationToken") == PermissionResult.PERMITTED
        for repository, repository_owner in owner.items():
            for action in PUSH_ACTIONS:  # the exact list is pinned in test_aws_documents
                result = policy.is_action_permitted(action, arn(repository))
                expected = PermissionResult.PERMITTED if repository_owner == project else PermissionResult.NEUTRAL
                assert result == expected, (project, repository, action)
        # nothing beyond the push/pull set, even on its own repository
        for action in ("ecr:DeleteRepository", "ecr:SetRepositoryPolicy", "ecr:BatchDeleteImage", "ecr:PutLifecyclePolicy"):
            assert policy.is_action_permitted(action, arn(project)) == PermissionResult.NEUTRAL


def ci_variables(run: ProgramRun, project: str = "acme/web") -> dict[str, object]:
    return {r.inputs["key"]: r for r in run.of_type("gitlab:index/projectVariable:ProjectVariable") if r.inputs["project"] == project}


def test_ci_variables_access_key_mode(run: ProgramRun) -> None:
    variables = ci_variables(run)
    assert sorted(variables) == [
        "AWS_ACCESS_KEY_ID",
        "AWS_DEFAULT_REGION",
        "AWS_SECRET_ACCESS_KEY",
        "BUILDKIT_CACHE_REPOSITORY",
        "ECR_REGISTRY",
        "ECR_REPOSITORY_WEB",
    ]
    assert "ECR_REPOSITORY_API" in ci_variables(run, "acme/api") and run.of_type("gitlab:index/groupVariable:GroupVariable") == []
    for reg in variables.values():
        inputs = reg.inputs
        assert inputs["project"] == "acme/web" and inputs["environmentScope"] == "dev" and inputs["raw"] is True
        assert inputs["protected"] is True  # protectVariables defaults to true
    registry = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
    assert variables["ECR_REGISTRY"].inputs["value"] == registry
    assert variables["ECR_REPOSITORY_WEB"].inputs["value"] == f"{registry}/web"
    assert variables["BUILDKIT_CACHE_REPOSITORY"].inputs["value"] == f"{registry}/buildkit-cache/acme-web"
    secret = variables["AWS_SECRET_ACCESS_KEY"]
    assert secret.inputs["value"] == MOCK_SECRET_ACCESS_KEY
    assert secret.secret_paths() == {"value"}
    assert (secret.inputs["masked"], secret.inputs["hidden"]) == (True, True)
    assert variables["AWS_ACCESS_KEY_ID"].inputs["masked"] is True
    assert variables["AWS_ACCESS_KEY_ID"].secret_paths() == set()
    assert variables["ECR_REGISTRY"].inputs["masked"] is False
    # each project gets its own identity's key
    assert variables["AWS_ACCESS_KEY_ID"].inputs["value"] != ci_variables(run, "acme/api")["AWS_ACCESS_KEY_ID"].inputs["value"]
    # The engine marks AccessKey.secret secret from this request field; the mock SDK does not.
    assert all("secret" in k.additional_secret_outputs for k in run.of_type("aws:iam/accessKey:AccessKey"))
    assert MOCK_SECRET_ACCESS_KEY not in json.dumps(run.outputs, default=str)


def test_shared_group_variables_are_an_opt_in_without_credentials() -> None:
    raw = make_config()
    raw["gitlab"] = {"url": "https://gitlab.example.com", "sharedVariablesGroup": "acme", "protectVariables": False}
    run = run_program(raw)
    shared = {r.inputs["key"]: r.inputs for r in run.of_type("gitlab:index/groupVariable:GroupVariable")}
    assert sorted(shared) == ["AWS_DEFAULT_REGION", "ECR_REGISTRY"] and shared["ECR_REGISTRY"]["group"] == "acme"
    assert shared["ECR_REGISTRY"]["protected"] is False
    web = ci_variables(run)
    assert "ECR_REGISTRY" not in web
    assert web["AWS_SECRET_ACCESS_KEY"].inputs["protected"] is True and web["AWS_ACCESS_KEY_ID"].inputs["protected"] is True


OIDC_SUBJECTS = [{"projectPath": "acme/web", "ref": "main"}, {"projectPath": "acme/api", "ref": "main"}]


def test_oidc_mode() -> None:
    run = run_program(make_config(credentials={"mode": "oidc", "oidcSubjects": OIDC_SUBJECTS}))
    assert run.of_type("aws:iam/user:User") == [] and run.of_type("aws:iam/accessKey:AccessKey") == []
    provider = run.one("aws:iam/openIdConnectProvider:OpenIdConnectProvider").inputs
    assert provider["url"] == "https://gitlab.example.com" and provider["clientIdLists"] == ["https://gitlab.example.com"]
    roles = {r.inputs["name"]: json.loads(r.inputs["assumeRolePolicy"]) for r in run.of_type("aws:iam/role:Role")}
    (statement,) = roles["gitlab-buildkit-push-dev-acme-web"]["Statement"]
    assert statement["Principal"] == {"Federated": "arn:aws:iam::123456789012:oidc-provider/gitlab.example.com"}
    # each project's role trusts only that project's refs
    assert statement["Condition"]["StringEquals"]["gitlab.example.com:sub"] == ["project_path:acme/web:ref_type:branch:ref:main"]
    api = roles["gitlab-buildkit-push-dev-acme-api"]["Statement"][0]["Condition"]["StringEquals"]["gitlab.example.com:sub"]
    assert api == ["project_path:acme/api:ref_type:branch:ref:main"]
    variables = ci_variables(run)
    assert "AWS_ACCESS_KEY_ID" not in variables and "AWS_SECRET_ACCESS_KEY" not in variables
    assert variables["AWS_ROLE_ARN"].inputs["value"] == "arn:aws:iam::123456789012:role/gitlab-buildkit-push-dev-acme-web"
    assert run.outputs["pushIdentities"] == {
        "acme/web": "gitlab-buildkit-push-dev-acme-web",
        "acme/api": "gitlab-buildkit-push-dev-acme-api",
    }


def test_existing_oidc_provider_is_reused() -> None:
    arn = "arn:aws:iam::123456789012:oidc-provider/gitlab.example.com"
    run = run_program(make_config(credentials={"mode": "oidc", "oidcProviderArn": arn, "oidcSubjects": OIDC_SUBJECTS}))
    assert run.of_type("aws:iam/openIdConnectProvider:OpenIdConnectProvider") == []
    assert all(arn in r.inputs["assumeRolePolicy"] for r in run.of_type("aws:iam/role:Role"))


def test_an_oidc_provider_another_stack_owns_is_looked_up_by_url_not_created() -> None:
    # AWS allows one IAM OIDC provider per URL per account: the second stack of an account finds it.
    run = run_program(make_config(credentials={"oidcProvider": "existing"}, preview=PREVIEW))
    assert run.of_type("aws:iam/openIdConnectProvider:OpenIdConnectProvider") == []
    (role,) = run.of_type("aws:iam/role:Role")
    assert "arn:aws:iam::123456789012:oidc-provider/gitlab.example.com" in role.inputs["assumeRolePolicy"]


def test_a_missing_existing_oidc_provider_fails_before_any_resource_with_the_key() -> None:
    with pytest.raises(ConfigError) as caught:
        run_program(
            make_config(credentials={"oidcProvider": "existing"}, preview=PREVIEW),
            oidc_providers=False,
        )
    message = str(caught.value)
    assert "credentials.oidcProvider = 'existing': no IAM OIDC provider for https://gitlab.example.com" in message
    assert "deploy the stack that owns it (credentials.oidcProvider 'create') first" in message


def test_an_oidc_provider_arn_of_another_account_is_refused_by_name() -> None:
    # IAM trusts only the role's own account's providers: every role would exist, none could be assumed.
    arn = "arn:aws:iam::210987654321:oidc-provider/gitlab.example.com"
    with pytest.raises(ConfigError) as caught:
        run_program(make_config(credentials={"mode": "oidc", "oidcProviderArn": arn, "oidcSubjects": OIDC_SUBJECTS}))
    message = str(caught.value)
    assert f"credentials.oidcProviderArn = '{arn}': is in account 210987654321" in message
    assert "this stack's AWS provider is in account 123456789012" in message


def test_the_shipped_stacks_create_the_account_oidc_provider_once() -> None:
    # dev owns it; staging and prod (same account in the shipped files) look it up.
    owners = [
        stack for stack in ("dev", "staging", "prod") if run_stack(stack).of_type("aws:iam/openIdConnectProvider:OpenIdConnectProvider")
    ]
    assert owners == ["dev"]


def test_key_rotation_slots() -> None:
    run = run_program(make_config(credentials={"accessKeySlots": ["blue", "green"], "activeAccessKey": "green"}))
    keys = run.of_type("aws:iam/accessKey:AccessKey")
    assert sorted(k.name for k in keys) == ["push-acme-api-blue", "push-acme-api-green", "push-acme-web-blue", "push-acme-web-green"]
    ids = {k.name: k.resource_id for k in keys}
    assert ids["push-acme-web-green"] != ids["push-acme-web-blue"]
    assert ci_variables(run)["AWS_ACCESS_KEY_ID"].inputs["value"] == ids["push-acme-web-green"]


def test_prod_protects_stateful_aws_resources_only() -> None:
    raw = make_config(environment="prod", registry={"region": "eu-west-1", "applications": ["web"], "protect": True})
    run = run_program(raw, stack="prod")
    for reg in run.resources:
        if reg.type == "aws:iam/accessKey:AccessKey":
            assert not reg.protect, reg.name  # rotating keys: see the next test
        elif reg.type.startswith("aws:") and not reg.type.startswith("pulumi:providers"):
            assert reg.protect, reg.type
        if reg.type.startswith(("kubernetes:", "gitlab:")):
            assert not reg.protect, reg.type


def test_prod_rotation_can_drop_the_old_key() -> None:
    """Regression: keys inherited `protect` from PushIdentity, so rotation step 3 (drop blue) was refused.

    Reads `protect` from the RegisterResource requests, i.e. as the engine receives it after the SDK's
    inheritance from the parent component."""
    registry = {"region": "eu-west-1", "applications": ["web"], "protect": True}
    during = make_config(
        environment="prod", registry=registry, credentials={"accessKeySlots": ["blue", "green"], "activeAccessKey": "green"}
    )
    run = run_program(during, stack="prod")
    protect = {(r.type.split(":")[-1], r.name): r.protect for r in run.resources if r.type.startswith("aws:iam")}
    assert protect == {
        ("Policy", "push-acme-web-policy"): True,
        ("User", "push-acme-web-ci"): True,
        ("UserPolicyAttachment", "push-acme-web-policy"): True,
        ("AccessKey", "push-acme-web-blue"): False,
        ("AccessKey", "push-acme-web-green"): False,
    }


def test_network_isolation_can_be_turned_off() -> None:
    run = run_program(make_config(network={"enabled": False}))
    assert run.of_type("kubernetes:networking.k8s.io/v1:NetworkPolicy") == []


def test_outputs(run: ProgramRun) -> None:
    assert run.outputs["managerNamespace"] == "gitlab-runner"
    assert run.outputs["jobNamespace"] == "gitlab-runner-jobs"
    assert run.outputs["runnerId"] == "4242"
    assert run.outputs["releaseStatus"] == "deployed"
    assert run.outputs["repositories"] == {
        "web": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/web",
        "api": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/api",
    }


def test_invalid_config_registers_nothing() -> None:
    monitor = RecordingMonitor(StackMocks("eu-west-1"))
    with pytest.raises(ConfigError, match=r"runner\.concurrent = 0"):
        run_program(make_config(runner={"scope": {"type": "project_type", "projectId": 1}, "concurrent": 0}), monitor=monitor)
    assert monitor.registrations == {}


def test_plain_gitlab_token_is_refused_before_anything_is_registered() -> None:
    monitor = RecordingMonitor(StackMocks("eu-west-1"))
    with pytest.raises(ConfigError, match=r"gitlabToken: must be set with `pulumi config set --secret"):
        run_program({**make_config(), "gitlabToken": "glpat-plain"}, monitor=monitor)
    assert monitor.registrations == {}


def test_secret_gitlab_token_reaches_only_the_provider() -> None:
    run = run_program(make_config(), secrets={"gitlabToken": "glpat-secret-token"})
    provider = run.one("pulumi:providers:gitlab")
    assert provider.inputs["token"] == "glpat-secret-token"
    assert "token" in provider.secret_paths()
    assert provider.inputs["baseUrl"] == "https://gitlab.example.com/api/v4"
    others = [r for r in run.resources if r is not provider]
    assert not [r.type for r in others if "glpat-secret-token" in json.dumps(r.raw_inputs)]


def test_pull_principals_add_a_repository_policy_per_repository() -> None:
    principal = "arn:aws:iam::210987654321:role/deployer"
    run = run_program(make_config(registry={"region": "eu-west-1", "applications": ["web"], "pullPrincipals": [principal]}))
    policies = run.of_type("aws:ecr/repositoryPolicy:RepositoryPolicy")
    assert sorted(p.inputs["repository"] for p in policies) == ["buildkit-cache/acme-web", "web"]
    (statement,) = json.loads(policies[0].inputs["policy"])["Statement"]
    assert statement["Principal"] == {"AWS": [principal]}


def test_kms_encryption_and_cache_exclusion_filter() -> None:
    key = "arn:aws:kms:eu-west-1:123456789012:key/abcd"
    raw = make_config(
        registry={
            "region": "eu-west-1",
            "applications": ["web"],
            "encryption": "KMS",
            "kmsKeyArn": key,
            "cacheTagMutability": "IMMUTABLE_WITH_EXCLUSION",
        }
    )
    repos = {r.inputs["name"]: r.inputs for r in run_program(raw).of_type("aws:ecr/repository:Repository")}
    assert repos["web"]["encryptionConfigurations"] == [{"encryptionType": "KMS", "kmsKey": key}]
    assert "imageTagMutabilityExclusionFilters" not in repos["web"]
    assert repos["buildkit-cache/acme-web"]["imageTagMutability"] == "IMMUTABLE_WITH_EXCLUSION"
    assert repos["buildkit-cache/acme-web"]["imageTagMutabilityExclusionFilters"] == [{"filter": "cache-*", "filterType": "WILDCARD"}]


def test_creation_order_is_explicit_where_names_are_plain_strings(run: ProgramRun) -> None:
    """Names known from config are passed as strings (known at preview); depends_on must then carry the order."""
    namespaces = {r.inputs["metadata"]["name"]: r.urn for r in run.of_type("kubernetes:core/v1:Namespace")}
    for reg in run.resources:
        namespace = (reg.inputs.get("metadata") or {}).get("namespace") if reg.type.startswith("kubernetes:") else None
        if namespace:
            assert namespaces[namespace] in reg.dependencies, f"{reg.type} {reg.name} does not wait for namespace {namespace}"
    release = run.one("kubernetes:helm.sh/v3:Release")
    for typ in ("kubernetes:core/v1:Secret", "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding", "kubernetes:core/v1:LimitRange"):
        assert run.one(typ).urn in release.dependencies, typ
    assert {p.urn for p in run.of_type("kubernetes:networking.k8s.io/v1:NetworkPolicy")} <= set(release.dependencies)
    repos = {r.inputs["name"]: r.urn for r in run.of_type("aws:ecr/repository:Repository")}
    for lifecycle in run.of_type("aws:ecr/lifecyclePolicy:LifecyclePolicy"):
        assert repos[lifecycle.inputs["repository"]] in lifecycle.dependencies
    for project in ("acme-web", "acme-api"):
        attachment = run.one("aws:iam/userPolicyAttachment:UserPolicyAttachment", f"push-{project}-policy")
        assert {
            run.one("aws:iam/policy:Policy", f"push-{project}-policy").urn,
            run.one("aws:iam/user:User", f"push-{project}-ci").urn,
        } <= set(attachment.dependencies)


def test_prod_stack_cannot_run_with_dev_rules() -> None:
    monitor = RecordingMonitor(StackMocks("eu-west-1"))
    with pytest.raises(ConfigError, match=r"stack 'prod' must declare environment 'prod'"):
        run_program(make_config(), stack="prod", monitor=monitor)
    assert monitor.registrations == {}


def test_egress_range_inside_an_excluded_range_registers_nothing() -> None:
    """Regression: the check ran in a builder, after 13 resources had been registered."""
    monitor = RecordingMonitor(StackMocks("eu-west-1"))
    with pytest.raises(ConfigError, match=r"network\.jobEgressCidrs = \"10\.1\.0\.0/16\": lies inside"):
        run_program(make_config(network={"jobEgressCidrs": ["10.1.0.0/16"]}), monitor=monitor)
    assert monitor.registrations == {}


def test_a_secret_config_value_is_never_echoed_in_an_error() -> None:
    """`pulumi config set --secret runner ...`: the engine marks the key secret; its values stay out of errors."""
    runner = {"scope": {"type": "project_type", "projectId": 1}, "description": "internal-codename-" + "x" * 300}
    monitor = RecordingMonitor(StackMocks("eu-west-1"))
    raw = {k: v for k, v in make_config().items() if k != "runner"}
    with pytest.raises(ConfigError) as caught:
        run_program(raw, secrets={"runner": json.dumps(runner)}, monitor=monitor)
    assert "gitlab-buildkit-runner:runner.description = [secret]" in str(caught.value)
    assert "internal-codename" not in str(caught.value)
    assert monitor.registrations == {}


CLUSTER_SCOPED = ("ClusterRole", "ClusterRoleBinding")


def test_cluster_scoped_objects_are_named_per_stack() -> None:
    """Two stacks in one cluster (each with its own namespaces) must not write one cluster-scoped object:
    the second would take it over and the first destroy would delete it (found under the real engine)."""
    names = {}
    for manager in ("dev-runner", "staging-runner"):
        run = run_program(
            make_config(
                kubernetes={"managerNamespace": manager, "jobNamespace": f"{manager}-jobs"},
                preview=PREVIEW,
            )
        )
        found = [r for r in run.resources if r.type.split(":")[-1] in CLUSTER_SCOPED and r.type.startswith("kubernetes:")]
        assert {r.type.split(":")[-1] for r in found} == set(CLUSTER_SCOPED)
        names[manager] = {r.inputs["metadata"]["name"] for r in found}
        assert names[manager] == {f"gitlab-buildkit-runner-preview-{manager}"}
    assert not names["dev-runner"] & names["staging-runner"]
