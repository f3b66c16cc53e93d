"""Config layer: every rule, its message (key, value, what is allowed), unknown keys, missing values."""

from __future__ import annotations

import re

import pytest
from conftest import make_config
from pydantic import ValidationError

from components.config import ConfigError, is_pinned_image, parse_config, project_config

SCOPE = {"type": "project_type", "projectId": 1}
PREVIEW = {"projectPath": "acme/infra", "refs": ["infra/*"], "stateBucket": "acme-pulumi-state"}


def error_of(raw: dict) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    return str(info.value)


def test_minimal_config_gets_secure_defaults() -> None:
    cfg = parse_config(make_config())
    assert cfg.runner.job_security_mode == "baseline"
    assert cfg.runner.chart_version == "0.86.0"
    assert cfg.registry.image_tag_mutability == "IMMUTABLE"
    assert cfg.registry.cache_tag_mutability == "MUTABLE"
    assert cfg.registry.encryption == "AES256"
    assert cfg.credentials.mode == "access-key"
    assert cfg.kubernetes.job_automount_service_account_token is False
    assert cfg.network.enabled is True
    assert cfg.environment_scope == "dev"


def test_config_is_frozen() -> None:
    cfg = parse_config(make_config())
    with pytest.raises(ValidationError, match="frozen"):
        cfg.runner.concurrent = 99  # type: ignore[misc]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {"runner": {"scope": {"type": "project_type", "projectId": 1}, "concurent": 3}},
            r"gitlab-buildkit-runner:runner\.concurent: unknown key",
        ),
        ({"registri": {}}, r"gitlab-buildkit-runner:registri: unknown key"),
        ({"environment": "qa"}, r"gitlab-buildkit-runner:environment = \"qa\": Input should be 'dev', 'staging' or 'prod'"),
        (
            {"runner": {"scope": {"type": "project_type", "projectId": 1}, "concurrent": 0}},
            r"runner\.concurrent = 0: Input should be greater than or equal to 1",
        ),
        (
            {"runner": {"scope": {"type": "project_type", "projectId": 1}, "jobSecurityMode": "privileged"}},
            r"runner\.jobSecurityMode = \"privileged\": Input should be 'baseline', 'confined' or 'unconfined'",
        ),
        (
            {"runner": {"scope": {"type": "project_type", "projectId": 1}, "jobSecurityMode": "unconfined"}},
            r"set acknowledgeUnconfined: true",
        ),
        (
            {"runner": {"scope": {"type": "project_type", "projectId": 1}, "acknowledgeUnconfined": True}},
            r"only meaningful with jobSecurityMode 'unconfined'",
        ),
        ({"runner": {"scope": {"type": "group_type"}}}, r"runner\.scope = \{\"type\": \"group_type\"\}: type 'group_type' needs groupId"),
        ({"runner": {"scope": {"type": "instance_type", "projectId": 1}}}, r"type 'instance_type' does not take projectId"),
        ({"runner": {"scope": {"type": "project_type", "projectId": 1}, "tags": [], "runUntagged": False}}, r"could never pick a job"),
        (
            {"runner": {"scope": {"type": "project_type", "projectId": 1}, "tags": ["a b"]}},
            r"runner\.tags\.0 = \"a b\": must be a runner tag",
        ),
        (
            {"runner": {"scope": {"type": "project_type", "projectId": 1}, "chartVersion": "latest"}},
            r"runner\.chartVersion = \"latest\": must be an exact chart version",
        ),
        (
            {"runner": {"scope": {"type": "project_type", "projectId": 1}, "jobImage": "Moby/BuildKit::x"}},
            r"runner\.jobImage = \"Moby/BuildKit::x\": must be an image reference",
        ),
        (
            {"runner": {"scope": {"type": "project_type", "projectId": 1}, "maximumTimeoutSeconds": 60}},
            r"maximumTimeoutSeconds = 60: Input should be greater than or equal to 600",
        ),
        (
            {"runner": {"scope": {"type": "project_type", "projectId": 1}, "buildStateSizeLimit": "1G"}},
            r"runner\.buildStateSizeLimit: unknown key",
        ),
        (
            {"runner": {"scope": {"type": "project_type", "projectId": 1}, "buildkitStateSizeLimit": "ten gigs"}},
            r"buildkitStateSizeLimit = \"ten gigs\": must be a byte quantity",
        ),
        ({"kubernetes": {"jobNamespace": "Jobs_NS"}}, r"kubernetes\.jobNamespace = \"Jobs_NS\": must be a DNS label"),
        ({"kubernetes": {"jobNamespace": "gitlab-runner"}}, r"must differ from managerNamespace"),
        ({"kubernetes": {"podSecurityVersion": "latest"}}, r"podSecurityVersion = \"latest\": must be a pinned Kubernetes minor"),
        ({"registry": {"region": "eu-west-1", "applications": []}}, r"registry\.applications = \[\]: List should have at least 1 item"),
        (
            {"registry": {"region": "eu-west-1", "applications": ["Web"]}},
            r"registry\.applications\.0\.name = \"Web\": must be an ECR repository name",
        ),
        (
            {"registry": {"region": "eu-west-1", "applications": ["a"]}},
            r"applications\.0\.name = \"a\": must be an ECR repository name: 2-256",
        ),
        ({"registry": {"region": "eu-west-1", "applications": ["web--x_"]}}, r"must be an ECR repository name"),
        ({"registry": {"region": "eu-west-1", "applications": ["x" * 257]}}, r"must be an ECR repository name"),
        ({"registry": {"region": "eu-west-1", "applications": ["web", "api", "web"]}}, r"applications has duplicates: \['web'\]"),
        (
            {"registry": {"region": "eu-west-1", "applications": ["web-api", "web.api"]}},
            r"map to the same CI variable ECR_REPOSITORY_WEB_API",
        ),
        (
            {"registry": {"region": "eu-west-1", "applications": ["buildkit-cache"]}},
            r"cacheRepository 'buildkit-cache' is also an application",
        ),
        ({"registry": {"region": "Europe", "applications": ["web"]}}, r"registry\.region = \"Europe\": must be an AWS region"),
        (
            {"registry": {"region": "eu-west-1", "applications": ["web"], "encryption": "KMS"}},
            r"kmsKeyArn is required with encryption 'KMS'",
        ),
        (
            {"registry": {"region": "eu-west-1", "applications": ["web"], "imageTagMutability": "mutable"}},
            r"imageTagMutability = \"mutable\": Input should be 'IMMUTABLE' or 'MUTABLE'",
        ),
        (
            {"registry": {"region": "eu-west-1", "applications": ["web"], "pullPrincipals": ["123456789012"]}},
            r"pullPrincipals\.0 = \"123456789012\": must be an AWS ARN",
        ),
        ({"credentials": {"mode": "oidc"}}, r"mode 'oidc' needs at least one entry in oidcSubjects"),
        ({"credentials": {"mode": "sso"}}, r"credentials\.mode = \"sso\": Input should be 'access-key' or 'oidc'"),
        (
            {"credentials": {"accessKeySlots": ["blue"], "activeAccessKey": "green"}},
            r"activeAccessKey 'green' is not one of accessKeySlots",
        ),
        ({"credentials": {"accessKeySlots": ["blue", "blue"]}}, r"must name 1 or 2 distinct slots"),
        ({"credentials": {"oidcSubjects": [{"projectPath": "a/b", "ref": "main"}]}}, r"only allowed with mode 'oidc'"),
        (
            {"credentials": {"mode": "oidc", "oidcSubjects": [{"projectPath": "a/b", "ref": "main; rm"}]}},
            r"oidcSubjects\.0\.ref = \"main; rm\"",
        ),
        (
            {"gitlab": {"url": "http://gitlab.example.com"}},
            r"gitlab\.url = \"http://gitlab.example.com\": must be an https URL",
        ),
        (
            {"gitlab": {"url": "https://gitlab.example.com", "variablesProject": "a/b"}},
            r"gitlab = .*: variablesProject is gone: each application's credentials and variables go to its own project",
        ),
        (
            {"network": {"jobEgressCidrs": ["10.0.0.1/8"]}},
            r"network\.jobEgressCidrs\.0 = \"10.0.0.1/8\": must be an IPv4 or IPv6 CIDR with no host bits",
        ),
        (
            {"network": {"apiServerCidrs": ["kubernetes.default"]}},
            r"apiServerCidrs\.0 = \"kubernetes.default\": must be an IPv4 or IPv6 CIDR",
        ),
        ({"network": {"jobEgressCidrs": []}}, r"network\.jobEgressCidrs = \[\]: is empty"),
        ({"network": {"apiServerPort": 0}}, r"network\.apiServerPort = 0: Input should be greater than or equal to 1"),
        ({"network": {"dnsNamespace": "Kube System"}}, r"network\.dnsNamespace = \"Kube System\": must be a DNS label"),
        ({"network": {"metricsNamespace": "-x"}}, r"network\.metricsNamespace = \"-x\": must be a DNS label"),
        (
            {"runner": {"scope": SCOPE, "nodeSelector": {"team": "{{x}}"}}},
            r"runner\.nodeSelector\.team = \"\{\{x\}\}\": must be a label value",
        ),
        (
            {"runner": {"scope": SCOPE, "nodeSelector": {"bad key!": "x"}}},
            r"runner\.nodeSelector\.\[key\] = \"bad key!\": must be a label key|nodeSelector.*must be a label key",
        ),
        ({"runner": {"scope": SCOPE, "managerImageTag": "alpine v18"}}, r"runner\.managerImageTag = \"alpine v18\": must be an image tag"),
        ({"runner": {"scope": SCOPE, "description": ""}}, r"runner\.description = \"\": String should have at least 1 character"),
        (
            {"runner": {"scope": SCOPE, "pollTimeoutSeconds": 5}},
            r"runner\.pollTimeoutSeconds = 5: Input should be greater than or equal to 30",
        ),
        ({"runner": {"scope": SCOPE, "buildResources": {"cpuRequest": "1"}}}, r"runner\.buildResources\.cpuLimit: required but not set"),
        (
            {"runner": {"scope": SCOPE, "cpuLimitOverwriteMax": "lots"}},
            r"runner\.cpuLimitOverwriteMax = \"lots\": must be a Kubernetes quantity",
        ),
        ({"kubernetes": {"jobQuota": {"pods": 0}}}, r"kubernetes\.jobQuota\.pods = 0: Input should be greater than or equal to 1"),
        (
            {"registry": {"region": "eu-west-1", "applications": ["web"], "lifecycle": {"untaggedExpireDays": 0}}},
            r"registry\.lifecycle\.untaggedExpireDays = 0",
        ),
        (
            {"registry": {"region": "eu-west-1", "applications": ["web"], "cacheTagMutability": "IMMUTABLE"}},
            r"cacheTagMutability = \"IMMUTABLE\": Input should be 'MUTABLE' or 'IMMUTABLE_WITH_EXCLUSION'",
        ),
        (
            {"registry": {"region": "eu-west-1", "applications": ["web"], "repositoryPrefix": "Acme"}},
            r"registry\.repositoryPrefix = \"Acme\": must be an ECR repository name",
        ),
        (
            {"credentials": {"mode": "oidc", "oidcProviderArn": "gitlab", "oidcSubjects": [{"projectPath": "a/b", "ref": "main"}]}},
            r"credentials\.oidcProviderArn = \"gitlab\": must be an AWS ARN",
        ),
        (
            {
                "credentials": {"oidcProviderArn": "arn:aws:iam::123456789012:oidc-provider/gitlab.other.example"},
                "preview": PREVIEW,
            },
            r"credentials\.oidcProviderArn = \"arn:aws:iam::123456789012:oidc-provider/gitlab.other.example\": must be the IAM OIDC "
            r"provider of gitlab.url's host: arn:<partition>:iam::<account>:oidc-provider/gitlab.example.com",
        ),
        (
            {"credentials": {"oidcProviderArn": "arn:aws:iam::123456789012:role/gitlab.example.com"}, "preview": PREVIEW},
            r"credentials\.oidcProviderArn = .*: must be the IAM OIDC provider of gitlab.url's host",
        ),
        (
            {"credentials": {"oidcProvider": "existing"}},
            r"credentials\.oidcProvider = \"existing\": is not used: only credentials.mode 'oidc' or preview.projectPath exchange ID tokens",
        ),
        (
            {"credentials": {"oidcProvider": "elsewhere"}},
            r"credentials\.oidcProvider = \"elsewhere\": Input should be 'create' or 'existing'",
        ),
        (
            {"credentials": {"mode": "oidc", "oidcSubjects": [{"projectPath": "a b", "ref": "main"}]}},
            r"oidcSubjects\.0\.projectPath = \"a b\": must be a GitLab path",
        ),
        (
            {"gitlab": {"url": "https://gitlab.example.com", "environmentScope": "prod env"}},
            r"gitlab\.environmentScope = \"prod env\": must be a GitLab environment name",
        ),
        ({"kubernetes": {"context": 7}}, r"kubernetes\.context = 7: must be a string"),
        (
            {"kubernetes": {"jobAutomountServiceAccountToken": "yes please"}},
            r"jobAutomountServiceAccountToken = \"yes please\": must be true or false, unquoted",
        ),
        (
            {"runner": {"scope": SCOPE, "chartRepository": "http://charts.gitlab.io"}},
            r"runner\.chartRepository = \"http://charts.gitlab.io\": must be an https:// URL",
        ),
        (
            {"runner": {"scope": SCOPE, "helperImage": "Helper Image"}},
            r"runner\.helperImage = \"Helper Image\": must be an image reference",
        ),
        ({"runner": {"scope": SCOPE, "runUntagged": "sometimes"}}, r"runner\.runUntagged = \"sometimes\": must be true or false, unquoted"),
        ({"runner": {"scope": SCOPE, "protectedOnly": "maybe"}}, r"runner\.protectedOnly = \"maybe\": must be true or false, unquoted"),
        (
            {"runner": {"scope": SCOPE, "checkIntervalSeconds": 0}},
            r"runner\.checkIntervalSeconds = 0: Input should be greater than or equal to 1",
        ),
        (
            {
                "runner": {
                    "scope": SCOPE,
                    "managerResources": {"cpuRequest": "1", "cpuLimit": "1", "memoryRequest": "1Gi", "memoryLimit": "lots"},
                }
            },
            r"runner\.managerResources\.memoryLimit = \"lots\": must be a byte quantity",
        ),
        ({"runner": {"scope": SCOPE, "helperResources": {"cpuRequest": "1"}}}, r"runner\.helperResources\.cpuLimit: required but not set"),
        ({"runner": {"scope": SCOPE, "metricsEnabled": "on-ish"}}, r"runner\.metricsEnabled = \"on-ish\": must be true or false, unquoted"),
        ({"runner": {"scope": SCOPE, "podMonitor": "perhaps"}}, r"runner\.podMonitor = \"perhaps\": must be true or false, unquoted"),
        (
            {"runner": {"scope": {"type": "project_type", "projectId": 0}}},
            r"runner\.scope\.projectId = 0: Input should be greater than or equal to 1",
        ),
        (
            {"registry": {"region": "eu-west-1", "applications": ["web"], "forceDelete": "nope"}},
            r"registry\.forceDelete = \"nope\": must be true or false, unquoted",
        ),
        (
            {"registry": {"region": "eu-west-1", "applications": ["web"], "cacheRepository": "Cache"}},
            r"registry\.cacheRepository = \"Cache\": must be an ECR repository name",
        ),
        (
            {"registry": {"region": "eu-west-1", "applications": ["web"], "encryption": "KMS", "kmsKeyArn": "alias/x"}},
            r"registry\.kmsKeyArn = \"alias/x\": must be an AWS ARN",
        ),
        (
            {"registry": {"region": "eu-west-1", "applications": ["web"], "lifecycle": {"keepTaggedCount": 0}}},
            r"registry\.lifecycle\.keepTaggedCount = 0",
        ),
        (
            {"registry": {"region": "eu-west-1", "applications": ["web"], "lifecycle": {"cacheExpireDays": 5000}}},
            r"registry\.lifecycle\.cacheExpireDays = 5000: Input should be less than or equal to 3650",
        ),
        (
            {"network": {"metadataCidrs": ["169.254.169.254/16"]}},
            r"network\.metadataCidrs\.0 = \"169.254.169.254/16\": must be an IPv4 or IPv6 CIDR with no host bits",
        ),
        ({"network": {"privateCidrs": ["10.0.0.0/33"]}}, r"network\.privateCidrs\.0 = \"10.0.0.0/33\": must be an IPv4 or IPv6 CIDR"),
        ({"network": {"gitlabCidrs": ["gitlab.com"]}}, r"network\.gitlabCidrs\.0 = \"gitlab.com\": must be an IPv4 or IPv6 CIDR"),
        ({"network": {"enabled": "mostly"}}, r"network\.enabled = \"mostly\": must be true or false, unquoted"),
        (
            {"gitlab": {"url": "https://gitlab.example.com", "sharedVariablesGroup": "acme group"}},
            r"gitlab\.sharedVariablesGroup = \"acme group\": must be a GitLab path",
        ),
        (
            {"gitlab": {"url": "https://gitlab.example.com/gitlab"}},
            r"gitlab\.url = \"https://gitlab.example.com/gitlab\": must be an https URL with no path",
        ),
        (
            {"credentials": {"mode": "oidc", "oidcSubjects": [{"projectPath": "a/b", "refType": "commit", "ref": "main"}]}},
            r"oidcSubjects\.0\.refType = \"commit\": Input should be 'branch' or 'tag'",
        ),
        ({"credentials": {"accessKeySlots": ["red"]}}, r"credentials\.accessKeySlots\.0 = \"red\": Input should be 'blue' or 'green'"),
        ({"runner": {"scope": SCOPE, "allowedImages": []}}, r"runner\.allowedImages = \[\]: List should have at least 1 item"),
        (
            {"runner": {"scope": SCOPE, "allowedImages": ["moby/buildkit:v0.24*-rootless"]}},
            r"jobImage 'moby/buildkit:v0\.25\.1-rootless' is not matched by allowedImages \['moby/buildkit:v0\.24\*-rootless'\]",
        ),
        (
            {"runner": {"scope": SCOPE, "allowedImages": ["Moby Buildkit"]}},
            r"runner\.allowedImages\.0 = \"Moby Buildkit\": must be a rootless BuildKit image pattern from one named registry",
        ),
    ],
)
def test_invalid_config_names_key_value_and_allowed(overrides: dict, expected: str) -> None:
    message = error_of(make_config(**overrides))
    assert message.startswith("invalid stack configuration:")
    assert re.search(expected, message), message


def test_missing_nested_required_values_are_named() -> None:
    raw = make_config()
    raw["runner"] = {"tags": ["x"]}
    raw["gitlab"] = {"protectVariables": True}
    message = error_of(raw)
    assert "gitlab-buildkit-runner:runner.scope: required but not set" in message
    assert "gitlab-buildkit-runner:gitlab.url: required but not set" in message


def test_missing_required_top_level_keys_are_all_reported() -> None:
    message = error_of({})
    for key in ("environment", "runner", "registry", "gitlab"):
        assert f"gitlab-buildkit-runner:{key}: required but not set" in message


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (
            {"runner": {"scope": {"type": "project_type", "projectId": 1}, "jobImage": "moby/buildkit:rootless"}},
            "runner.jobImage 'moby/buildkit:rootless' must be pinned",
        ),
        (
            {
                "runner": {
                    "scope": {"type": "project_type", "projectId": 1},
                    "jobImage": "docker.io/moby/buildkit:master-rootless",
                }
            },
            "runner.jobImage 'docker.io/moby/buildkit:master-rootless' must be pinned",
        ),
        (
            {"registry": {"region": "eu-west-1", "applications": ["web"], "protect": True, "imageTagMutability": "MUTABLE"}},
            "registry.imageTagMutability must be 'IMMUTABLE'",
        ),
        ({"registry": {"region": "eu-west-1", "applications": ["web"]}}, "registry.protect must be true"),
        (
            {"registry": {"region": "eu-west-1", "applications": ["web"], "protect": True, "forceDelete": True}},
            "registry.forceDelete must be false",
        ),
    ],
)
def test_prod_rules(overrides: dict, fragment: str) -> None:
    base = {"registry": {"region": "eu-west-1", "applications": ["web"], "protect": True}}
    raw = make_config(environment="prod", **{**base, **overrides})
    assert fragment in error_of(raw)


def test_prod_accepts_pinned_image_and_protected_immutable_registry() -> None:
    cfg = parse_config(make_config(environment="prod", registry={"region": "eu-west-1", "applications": ["web"], "protect": True}))
    assert cfg.registry.protect and cfg.runner.job_image == "moby/buildkit:v0.25.1-rootless"


def test_same_rules_pass_outside_prod() -> None:
    cfg = parse_config(make_config(registry={"region": "eu-west-1", "applications": ["web"], "imageTagMutability": "MUTABLE"}))
    assert cfg.registry.image_tag_mutability == "MUTABLE"


@pytest.mark.parametrize(
    ("image", "pinned"),
    [
        ("moby/buildkit:v0.25.1-rootless", True),
        ("moby/buildkit@sha256:" + "a" * 64, True),
        ("registry.example.com:5000/moby/buildkit:v0.25.1-rootless", True),
        ("moby/buildkit:rootless", False),
        ("moby/buildkit:latest", False),
        ("moby/buildkit", False),
    ],
)
def test_image_pinning(image: str, pinned: bool) -> None:
    assert is_pinned_image(image) is pinned


def test_unconfined_mode_with_acknowledgement_is_accepted() -> None:
    cfg = parse_config(
        make_config(
            runner={"scope": {"type": "project_type", "projectId": 1}, "jobSecurityMode": "unconfined", "acknowledgeUnconfined": True}
        )
    )
    assert cfg.runner.job_security_mode == "unconfined"


def test_project_config_parses_json_and_ignores_other_namespaces() -> None:
    entries = [
        ("gitlab-buildkit-runner:runner", '{"concurrent": 3}'),
        ("gitlab-buildkit-runner:environment", "dev"),
        ("aws:region", "eu-west-1"),
    ]
    assert project_config(entries) == {"runner": {"concurrent": 3}, "environment": "dev"}


def test_plain_text_gitlab_token_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"gitlab-buildkit-runner:gitlabToken: must be set with `pulumi config set --secret"):
        project_config([("gitlab-buildkit-runner:gitlabToken", "glpat-123")], secret_keys=[])


def test_secret_gitlab_token_is_accepted_and_not_part_of_the_model() -> None:
    raw = project_config([("gitlab-buildkit-runner:gitlabToken", "glpat-123")], secret_keys=["gitlab-buildkit-runner:gitlabToken"])
    assert raw == {}


def test_stack_named_after_an_environment_must_declare_it() -> None:
    with pytest.raises(ConfigError, match=r"environment = \"dev\": stack 'prod' must declare environment 'prod'"):
        parse_config(make_config(environment="dev"), stack="prod")
    assert parse_config(make_config(environment="dev"), stack="dev").environment == "dev"
    assert parse_config(make_config(environment="dev"), stack="feature-sandbox").environment == "dev"


def test_oidc_issuer_must_not_have_a_port() -> None:
    subjects = [{"projectPath": "acme/web", "ref": "main"}, {"projectPath": "acme/api", "ref": "main"}]
    raw = make_config(credentials={"mode": "oidc", "oidcSubjects": subjects})
    raw["gitlab"] = {"url": "https://gitlab.example.com:8443"}
    assert "gitlab.url 'https://gitlab.example.com:8443' has a port" in error_of(raw)
    raw["credentials"] = {"mode": "access-key"}
    assert parse_config(raw).gitlab.url == "https://gitlab.example.com:8443"


@pytest.mark.parametrize(
    "pattern",
    [
        "*/moby/buildkit:*rootless*",  # any registry: would admit evil.example/moby/buildkit
        "**/moby/buildkit:*rootless*",
        "*.example.com/moby/buildkit:*rootless*",
        "moby/buildkit:*",  # rootful BuildKit
        "moby/buildkit:**rootless**",
        "moby/buildkit:{v0.25.1,latest}-rootless",  # doublestar alternation
        "moby/*:*rootless*",
        "evil/buildkit:*rootless*",
        "moby/buildkit-rootless:v1",
        "docker:27-dind",
        "moby/buildkit:*rootless*\n",
    ],
)
def test_allowed_images_are_rootless_buildkit_from_a_named_registry(pattern: str) -> None:
    message = error_of(make_config(runner={"scope": SCOPE, "allowedImages": ["moby/buildkit:*rootless*", pattern]}))
    assert "runner.allowedImages.1 = " in message
    assert "must be a rootless BuildKit image pattern from one named registry" in message


def test_docker_hub_spellings_and_a_named_mirror_are_allowed() -> None:
    cfg = parse_config(make_config(runner={"scope": SCOPE, "jobImage": "docker.io/moby/buildkit:v0.25.1-rootless"}))
    assert cfg.runner.allowed_images == ["moby/buildkit:*rootless*", "docker.io/moby/buildkit:*rootless*"]
    mirror = "registry.example.com:5000/mirror/moby/buildkit"
    cfg = parse_config(
        make_config(runner={"scope": SCOPE, "jobImage": f"{mirror}:v0.25.1-rootless", "allowedImages": [f"{mirror}:*rootless*"]})
    )
    assert cfg.runner.allowed_images == [f"{mirror}:*rootless*"]


QUOTA_RUNNER = {"scope": SCOPE, "concurrent": 4}


@pytest.mark.parametrize(
    ("quota", "runner", "expected"),
    [
        (
            {"cpu": "16"},
            QUOTA_RUNNER,
            'kubernetes.jobQuota.cpu = "16": runner.concurrent (4) x per-pod limit 4.5 (build 4 + 1 x helper 500m) = 18 '
            "exceeds it; raise kubernetes.jobQuota.cpu to at least 18 or lower runner.concurrent to 3",
        ),
        (
            {"cpu": "100", "memory": "32Gi"},
            QUOTA_RUNNER,
            'kubernetes.jobQuota.memory = "32Gi": runner.concurrent (4) x per-pod limit 8.25Gi (build 8Gi + 1 x helper 256Mi) = 33Gi',
        ),
        (
            {"cpu": "100", "ephemeralStorage": "160Gi"},
            QUOTA_RUNNER,
            'kubernetes.jobQuota.ephemeralStorage = "160Gi": runner.concurrent (4) x per-pod limit 41Gi (build 40Gi + 1 x helper 1Gi) = 164Gi',
        ),
        ({"pods": 3}, QUOTA_RUNNER, "kubernetes.jobQuota.pods = 3: is below runner.concurrent (4)"),
        # a job may raise its CPU limit up to the overwrite maximum: the quota must hold that too
        (
            {"cpu": "20"},
            {**QUOTA_RUNNER, "cpuLimitOverwriteMax": "8"},
            "runner.concurrent (4) x per-pod limit 8.5 (build 8 + 1 x helper 500m) = 34",
        ),
        # with services allowed, a pod may carry one more helper-sized container
        ({"cpu": "18"}, {**QUOTA_RUNNER, "allowedServices": ["postgres:*"]}, "per-pod limit 5 (build 4 + 2 x helper 500m) = 20"),
    ],
)
def test_job_quota_must_fit_concurrent_pods(quota: dict, runner: dict, expected: str) -> None:
    """Regression: the quota admitted fewer job pods than runner.concurrent; the jobs over it failed."""
    message = error_of(make_config(kubernetes={"jobQuota": quota}, runner=runner))
    assert expected in message, message


def test_job_quota_that_fits_is_accepted() -> None:
    cfg = parse_config(make_config(kubernetes={"jobQuota": {"cpu": "18", "memory": "33Gi", "pods": 4}}, runner=QUOTA_RUNNER))
    assert cfg.kubernetes.job_quota is not None


def test_helper_must_limit_ephemeral_storage_when_the_build_does() -> None:
    helper = {"cpuRequest": "100m", "cpuLimit": "500m", "memoryRequest": "128Mi", "memoryLimit": "256Mi"}
    message = error_of(make_config(runner={"scope": SCOPE, "helperResources": helper}))
    assert "runner.helperResources.ephemeralStorageRequest = null: must be set because buildResources.ephemeralStorageRequest is" in message


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"registry": {"region": "eu-west-1", "applications": ["web\n"]}}, "registry.applications.0"),
        ({"registry": {"region": "eu-west-1\n", "applications": ["web"]}}, "registry.region"),
        ({"registry": {"region": "eu-west-1", "applications": ["web"], "repositoryPrefix": "acme\n"}}, "registry.repositoryPrefix"),
        ({"kubernetes": {"jobNamespace": "jobs\n"}}, "kubernetes.jobNamespace"),
        ({"kubernetes": {"podSecurityVersion": "v1.33\n"}}, "kubernetes.podSecurityVersion"),
        ({"runner": {"scope": SCOPE, "chartVersion": "0.86.0\n"}}, "runner.chartVersion"),
        ({"runner": {"scope": SCOPE, "tags": ["buildkit\n"]}}, "runner.tags.0"),
        ({"runner": {"scope": SCOPE, "jobImage": "moby/buildkit:v0.25.1-rootless\n"}}, "runner.jobImage"),
        ({"runner": {"scope": SCOPE, "nodeSelector": {"kubernetes.io/arch\n": "amd64"}}}, "runner.nodeSelector"),
        ({"gitlab": {"url": "https://gitlab.example.com\n"}}, "gitlab.url"),
        ({"gitlab": {"url": "https://gitlab.example.com", "sharedVariablesGroup": "acme\n"}}, "gitlab.sharedVariablesGroup"),
        (
            {"registry": {"region": "eu-west-1", "applications": [{"name": "web", "projectPath": "acme/web\n"}]}},
            "registry.applications.0.projectPath",
        ),
        (
            {
                "registry": {
                    "region": "eu-west-1",
                    "applications": ["web"],
                    "encryption": "KMS",
                    "kmsKeyArn": "arn:aws:kms:eu-west-1:123456789012:key/k\n",
                }
            },
            "registry.kmsKeyArn",
        ),
    ],
)
def test_a_trailing_newline_is_refused(overrides: dict, key: str) -> None:
    """Regression: patterns ended in `$`, which also matches before a final newline."""
    assert f"gitlab-buildkit-runner:{key}" in error_of(make_config(**overrides))


@pytest.mark.parametrize(
    "url",
    [
        "https://charts.gitlab.io@evil.example",  # the host is evil.example
        "https://user:password@charts.gitlab.io",
        "https://charts.gitlab.io/?next=https://evil.example",
        "https://charts.gitlab.io/#x",
        "https://charts gitlab.io",
        "https://charts.gitlab.io\n",
        "https://:443/charts",
        "https://charts.gitlab.io:99999",
        "http://charts.gitlab.io",
        "HTTPS://charts.gitlab.io",
    ],
)
def test_chart_repository_must_name_its_host_plainly(url: str) -> None:
    message = error_of(make_config(runner={"scope": SCOPE, "chartRepository": url}))
    assert "runner.chartRepository = " in message and "must be an https:// URL of a Helm repository" in message


@pytest.mark.parametrize("url", ["https://charts.gitlab.io", "https://nexus.example.com:8443/repository/helm-proxy"])
def test_chart_repository_accepts_plain_https_urls(url: str) -> None:
    assert parse_config(make_config(runner={"scope": SCOPE, "chartRepository": url})).runner.chart_repository == url


@pytest.mark.parametrize(
    ("key", "fragment"),
    [("gitlabCidrs", "the runner manager could not reach GitLab"), ("privateCidrs", "could reach every cluster and VPC address")],
)
def test_empty_network_lists_are_refused_with_the_reason(key: str, fragment: str) -> None:
    message = error_of(make_config(network={key: []}))
    assert f"gitlab-buildkit-runner:network.{key} = []: is empty: " in message and fragment in message
    assert parse_config(make_config(network={key: [], "enabled": False})).network.enabled is False


@pytest.mark.parametrize(
    ("overrides", "secret"),
    [
        ({"runner": {"scope": SCOPE, "tags": ["glpat-AbCdEfGhIjKlMnOpQrSt x"]}}, "glpat-AbCdEfGhIjKlMnOpQrSt"),
        ({"runner": {"scope": SCOPE, "description": "glrt-0123456789abcdefghij " + "x" * 300}}, "glrt-0123456789abcdefghij"),
        ({"registry": {"region": "eu-west-1", "applications": ["web"], "kmsKeyArn": "AKIAIOSFODNN7EXAMPLE"}}, "AKIAIOSFODNN7EXAMPLE"),
        (
            {"registry": {"region": "eu-west-1", "applications": ["web"], "repositoryPrefix": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}},
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        ),
    ],
)
def test_config_errors_never_echo_values_that_look_like_credentials(overrides: dict, secret: str) -> None:
    message = error_of(make_config(**overrides))
    assert secret not in message and "[secret]" in message


def test_config_errors_never_echo_values_of_secret_keys() -> None:
    raw = make_config(runner={"scope": SCOPE, "description": "my-internal-name " + "x" * 300})
    message = ""
    try:
        parse_config(raw, secret_keys=["runner"])
    except ConfigError as exc:
        message = str(exc)
    assert "gitlab-buildkit-runner:runner.description = [secret]: String should have at most 255 characters" in message
    assert "my-internal-name" not in message


@pytest.mark.parametrize(
    ("patterns", "fragment"),
    [
        (["*"], 'registry.lifecycle.releaseTagPatterns.0 = "*": must be an ECR tag pattern'),
        (["**"], "not only wildcards"),
        (["v*.*.*-*-*"], "at most 4 '*' wildcards"),
        (["v 1*"], "must be an ECR tag pattern"),
        ([], "registry.lifecycle.releaseTagPatterns = []: List should have at least 1 item"),
    ],
)
def test_release_tag_patterns_are_ecr_patterns_that_cannot_keep_everything(patterns: list, fragment: str) -> None:
    message = error_of(
        make_config(registry={"region": "eu-west-1", "applications": ["web"], "lifecycle": {"releaseTagPatterns": patterns}})
    )
    assert fragment in message, message


def test_application_names_leave_room_for_the_cache_tag() -> None:
    """'cache-' + application + '.' + a 63-character ref slug must fit the 128 characters of an image tag."""
    name = "a" * 59
    message = error_of(make_config(registry={"region": "eu-west-1", "applications": [name]}))
    assert f'registry.applications.0.name = "{name}": is longer than 58 characters' in message
    assert parse_config(make_config(registry={"region": "eu-west-1", "applications": ["a" * 58]})).registry.application_names() == [
        "a" * 58
    ]


@pytest.mark.parametrize(
    ("cidrs", "missing"),
    [
        (["169.254.169.254/32"], "fd00:ec2::254, 169.254.170.23, fd00:ec2::23"),
        (["169.254.169.254/32", "fd00:ec2::254/128"], "169.254.170.23, fd00:ec2::23"),
    ],
)
def test_metadata_cidrs_must_cover_imds_and_the_pod_identity_agent(cidrs: list[str], missing: str) -> None:
    assert f"must cover {missing}" in error_of(make_config(network={"metadataCidrs": cidrs}))
    assert parse_config(make_config(network={"metadataCidrs": ["169.254.0.0/16", "fd00:ec2::/64"]})).network.enabled


def test_applications_in_the_old_shape_get_a_migration_hint() -> None:
    message = error_of(make_config(raw_applications=True, registry={"region": "eu-west-1", "applications": ["web", "api"]}))
    assert 'registry.applications.0 = "web": name the application\'s GitLab project: {name: web, projectPath: <group>/<project>}' in message
    assert 'registry.applications.1 = "api"' in message


@pytest.mark.parametrize("key", ["variablesProject", "variablesGroup"])
def test_the_old_shared_variables_target_gets_a_migration_hint(key: str) -> None:
    message = error_of(make_config(gitlab={"url": "https://gitlab.example.com", key: "acme"}))
    assert f"{key} is gone: each application's credentials and variables go to its own project" in message
    assert "sharedVariablesGroup" in message


OIDC = {"mode": "oidc"}


@pytest.mark.parametrize("environment", ["staging", "prod"])
@pytest.mark.parametrize("ref", ["*", "release/*", "v*", "main*"])
def test_outside_dev_only_exact_branches_are_trusted(environment: str, ref: str) -> None:
    subjects = [{"projectPath": "acme/web", "ref": "main"}, {"projectPath": "acme/api", "ref": ref}]
    raw = make_config(
        environment=environment,
        credentials={**OIDC, "oidcSubjects": subjects},
        registry={"region": "eu-west-1", "applications": ["web", "api"], "protect": True},
    )
    message = error_of(raw)
    assert (
        f'gitlab-buildkit-runner:credentials.oidcSubjects.1.ref = "{ref}": is a branch pattern: outside dev only exact branches' in message
    )


def test_dev_may_trust_a_ref_pattern() -> None:
    subjects = [{"projectPath": "acme/web", "ref": "feature/*"}, {"projectPath": "acme/api", "ref": "main"}]
    assert parse_config(make_config(credentials={**OIDC, "oidcSubjects": subjects})).credentials.mode == "oidc"


def test_oidc_subjects_must_name_an_application_project_and_cover_every_project() -> None:
    stranger = [{"projectPath": "acme/web", "ref": "main"}, {"projectPath": "evil/app", "ref": "main"}]
    assert 'credentials.oidcSubjects.1.projectPath = "evil/app": is not the project of any application' in error_of(
        make_config(credentials={**OIDC, "oidcSubjects": stranger})
    )
    missing = [{"projectPath": "acme/web", "ref": "main"}]
    assert "names no ref of project 'acme/api': its applications (api) could never push" in error_of(
        make_config(credentials={**OIDC, "oidcSubjects": missing})
    )


def test_projects_whose_names_collide_are_refused() -> None:
    apps = [{"name": "web", "projectPath": "acme/web-x"}, {"name": "api", "projectPath": "acme-web/x"}]
    assert "map to the same name part 'acme-web-x'" in error_of(make_config(registry={"region": "eu-west-1", "applications": apps}))


@pytest.mark.parametrize("ref", ["main?", "", "a b", "release/[0-9]", "a//b"])
def test_preview_refs_are_branch_names_or_wildcards(ref: str) -> None:
    assert "preview.refs.0 = " in error_of(make_config(preview={**PREVIEW, "refs": [ref]}))


@pytest.mark.parametrize(
    ("preview", "fragment"),
    [
        ({"projectPath": "acme/infra"}, "refs is required with projectPath"),
        ({**PREVIEW, "refs": ["infra/*", "main"]}, "contain the default branch 'main': the preview job never runs there"),
        ({**PREVIEW, "defaultBranch": "trunk", "refs": ["trunk"]}, "contain the default branch 'trunk'"),
        ({"projectPath": "acme/infra", "refs": ["infra/*"]}, "stateBucket is required with projectPath"),
        ({**PREVIEW, "secretsKeyArn": "alias/pulumi-dev"}, "preview.secretsKeyArn"),
    ],
)
def test_preview_config_is_complete(preview: dict, fragment: str) -> None:
    """Defect 2: the preview role trusted refs [main] by default, where the preview job never runs."""
    assert fragment in error_of(make_config(preview=preview))


def test_preview_accepts_wildcard_branches() -> None:
    assert parse_config(make_config(preview={**PREVIEW, "refs": ["infra/*", "next"]})).preview.refs == ["infra/*", "next"]


def test_the_runner_carries_the_environment_tag() -> None:
    """Defect 4: every stack's runner matched the template's default tags [buildkit]."""
    message = error_of(make_config(runner={"scope": SCOPE, "tags": ["buildkit"]}))
    assert "runner.tags = [\"buildkit\"]: must contain 'dev' (gitlab.environmentScope, else environment)" in message
    scoped = make_config(runner={"scope": SCOPE, "tags": ["buildkit", "dev"]}, gitlab={"environmentScope": "development"})
    assert "must contain 'development'" in error_of(scoped)


def test_outside_dev_tag_patterns_are_accepted_and_branch_patterns_refused() -> None:
    base = make_config(
        environment="staging",
        runner={"scope": SCOPE, "tags": ["buildkit", "staging"]},
        registry={"region": "eu-west-1", "applications": ["web"]},
    )
    tag = {"projectPath": "acme/web", "refType": "tag", "ref": "v*"}
    branch = {"projectPath": "acme/web", "refType": "branch", "ref": "release/*"}
    apps = base["registry"]
    ok = {**base, "credentials": {"mode": "oidc", "oidcSubjects": [tag]}}
    assert apps and parse_config(ok, stack="staging").credentials.oidc_subjects[0].ref == "v*"
    bad = {**base, "credentials": {"mode": "oidc", "oidcSubjects": [tag, branch]}}
    assert 'credentials.oidcSubjects.1.ref = "release/*": is a branch pattern' in error_of(bad)


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (
            {"runner": {"scope": SCOPE, "allowedServices": ["Postgres:16"]}},
            'runner.allowedServices.0 = "Postgres:16": must be an image pattern',
        ),
        ({"runner": {"scope": SCOPE, "allowedServices": ["postgres 16"]}}, "runner.allowedServices.0"),
        ({"preview": {"projectPath": "acme infra"}}, 'preview.projectPath = "acme infra": must be a GitLab path'),
        ({"preview": {**PREVIEW, "refs": []}}, "preview.refs = []: List should have at least 1 item"),
        (
            {"registry": {"region": "eu-west-1", "applications": [{"name": "web"}]}},
            "registry.applications.0.projectPath: required but not set",
        ),
        (
            {"registry": {"region": "eu-west-1", "applications": [{"name": "web", "projectPath": "a/b", "repo": "x"}]}},
            "registry.applications.0.repo: unknown key",
        ),
    ],
)
def test_new_keys_refuse_bad_values(overrides: dict, fragment: str) -> None:
    assert fragment in error_of(make_config(**overrides))


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        # Regression: YAML `true` became concurrent = 1 and a quoted "4" became 4, silently.
        ("runner", "concurrent", True, "runner.concurrent = true: must be a whole number, unquoted"),
        ("runner", "concurrent", "4", 'runner.concurrent = "4": must be a whole number, unquoted'),
        ("runner", "concurrent", 4.0, "runner.concurrent = 4.0: must be a whole number, unquoted"),
        ("runner", "runUntagged", "true", 'runner.runUntagged = "true": must be true or false, unquoted'),
        ("runner", "runUntagged", 1, "runner.runUntagged = 1: must be true or false, unquoted"),
        ("runner", "tags", "buildkit", 'runner.tags = "buildkit": must be a list'),
        ("runner", "description", 7, "runner.description = 7: must be a string"),
        ("gitlab", "protectVariables", "false", 'gitlab.protectVariables = "false": must be true or false, unquoted'),
    ],
)
def test_config_types_are_strict(section: str, key: str, value: object, expected: str) -> None:
    raw = make_config()
    raw[section] = {**raw[section], key: value}
    assert expected in error_of(raw)


def test_a_stack_file_declaring_another_environment_names_the_mismatch_alone() -> None:
    # Regression: a dev stack file saying `environment: prod` got prod's rules and a truncated dump of
    # the whole config ("(root) = {...") instead of the one line that matters.
    with pytest.raises(ConfigError) as caught:
        parse_config(make_config(environment="prod"), stack="dev")
    assert str(caught.value).splitlines()[1:] == [
        "  gitlab-buildkit-runner:environment = \"prod\": stack 'dev' must declare environment 'dev' "
        "(a stack named after an environment gets that environment's rules)"
    ]
    assert caught.value.problems == [line.strip() for line in str(caught.value).splitlines()[1:]]


def test_rules_over_a_whole_section_do_not_dump_it() -> None:
    message = error_of(make_config(environment="prod"))
    assert "gitlab-buildkit-runner: prod rules: " in message and "registry.protect must be true" in message
    assert "{" not in message  # no dump of the config


def test_every_problem_is_counted() -> None:
    raw = make_config(environment="staging")
    raw["runner"] = {**raw["runner"], "concurrent": "4", "runUntagged": "yes"}
    raw["gitlab"] = {**raw["gitlab"], "protectVariables": 0}
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    assert len(caught.value.problems) == 3 == len(str(caught.value).splitlines()) - 1


@pytest.mark.parametrize("environment", ["staging", "prod"])
@pytest.mark.parametrize("scope", ["*", "prod*", "review/*"])
def test_environment_scope_is_exact_outside_dev(environment: str, scope: str) -> None:
    raw = make_config(environment=environment)
    raw["registry"] = {**raw["registry"], "protect": True}  # prod's rules otherwise speak first
    raw["gitlab"] = {**raw["gitlab"], "environmentScope": scope}
    assert f'gitlab.environmentScope = "{scope}": is a wildcard' in error_of(raw)
    raw["environment"] = "dev"
    raw["runner"] = {**raw["runner"], "tags": ["buildkit", "dev"]}  # a wildcard scope: the runner's tag is the environment
    assert parse_config(raw).environment_scope == scope


BUILD = {
    "cpuRequest": "1",
    "cpuLimit": "4",
    "memoryRequest": "2Gi",
    "memoryLimit": "8Gi",
    "ephemeralStorageRequest": "10Gi",
    "ephemeralStorageLimit": "40Gi",
}


@pytest.mark.parametrize(
    ("resources", "expected"),
    [
        ({**BUILD, "cpuRequest": "5"}, "buildResources.cpuRequest = \"5\": exceeds cpuLimit '4'"),
        ({**BUILD, "memoryRequest": "9Gi"}, "buildResources.memoryRequest = \"9Gi\": exceeds memoryLimit '8Gi'"),
        ({**BUILD, "ephemeralStorageRequest": "41Gi"}, 'buildResources.ephemeralStorageRequest = "41Gi": exceeds ephemeralStorageLimit'),
        ({**BUILD, "memoryLimit": "8192m"}, 'buildResources.memoryLimit = "8192m": must be a byte quantity'),
        ({**BUILD, "ephemeralStorageLimit": "40000m"}, 'buildResources.ephemeralStorageLimit = "40000m": must be a byte quantity'),
        (
            {k: v for k, v in BUILD.items() if not k.startswith("ephemeral")},
            "buildResources.ephemeralStorageRequest = null: is required: without it the job namespace's LimitRange default",
        ),
        ({k: v for k, v in BUILD.items() if k != "ephemeralStorageLimit"}, "buildResources.ephemeralStorageLimit = null: is required"),
    ],
)
def test_build_resources_make_sense_as_kubernetes_quantities(resources: dict, expected: str) -> None:
    assert expected in error_of(make_config(runner={"scope": SCOPE, "buildResources": resources}))


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {"runner": {"scope": SCOPE, "buildkitStateSizeLimit": "30000m"}},
            'runner.buildkitStateSizeLimit = "30000m": must be a byte quantity',
        ),
        ({"runner": {"scope": SCOPE, "memoryLimitOverwriteMax": "16384m"}}, "runner.memoryLimitOverwriteMax"),
        ({"kubernetes": {"jobQuota": {"memory": "64000m"}}}, 'kubernetes.jobQuota.memory = "64000m": must be a byte quantity'),
        ({"kubernetes": {"jobQuota": {"ephemeralStorage": "1m"}}}, "kubernetes.jobQuota.ephemeralStorage"),
    ],
)
def test_memory_and_storage_are_never_milli_units(overrides: dict, expected: str) -> None:
    assert expected in error_of(make_config(**overrides))


def test_cpu_may_be_milli_units() -> None:
    cfg = parse_config(make_config(runner={"scope": SCOPE, "buildResources": {**BUILD, "cpuRequest": "500m", "cpuLimit": "1500m"}}))
    assert cfg.runner.build_resources.cpu_limit == "1500m"


@pytest.mark.parametrize("version", ["v1.18", "v1.25", "v1.32"])
def test_pod_security_version_has_a_floor(version: str) -> None:
    # Under older Pod Security Standards PSA skips checks the stack relies on.
    assert f'kubernetes.podSecurityVersion = "{version}": is older than v1.33' in error_of(
        make_config(kubernetes={"podSecurityVersion": version})
    )


@pytest.mark.parametrize("version", ["v1.033", "latest", "1.33"])
def test_pod_security_version_is_what_psa_parses(version: str) -> None:
    assert "kubernetes.podSecurityVersion" in error_of(make_config(kubernetes={"podSecurityVersion": version}))


def test_pod_security_version_may_be_newer_than_the_floor() -> None:
    assert parse_config(make_config(kubernetes={"podSecurityVersion": "v1.35"})).kubernetes.pod_security_version == "v1.35"


@pytest.mark.parametrize(
    ("network", "expected"),
    [
        (None, "gitlab-buildkit-runner:network = null: is required, with at least policyEngine"),
        ({}, "network.policyEngine = null: is required: name the cluster's NetworkPolicy engine"),
        ({"policyEngine": "vpc-cni"}, 'network.policyEngine = "vpc-cni": does not enforce NetworkPolicies on the runner\'s job pods'),
        ({"policyEngine": "none"}, 'network.policyEngine = "none": does not enforce'),
        ({"policyEngine": "weave"}, "network.policyEngine"),
        (
            {"policyEngine": "calico", "acknowledgeUnenforcedJobIsolation": True},
            "network.acknowledgeUnenforcedJobIsolation = true: is only meaningful",
        ),
    ],
)
def test_the_network_policy_engine_is_named_and_an_unenforcing_one_acknowledged(network: dict | None, expected: str) -> None:
    # Regression: the README promised job isolation on the VPC CNI, which does not enforce on bare pods.
    raw = make_config()
    if network is None:
        raw.pop("network")
    else:
        raw["network"] = network
    assert expected in error_of(raw)


@pytest.mark.parametrize("engine", ["vpc-cni", "none"])
def test_an_unenforcing_engine_with_acknowledgement_is_accepted(engine: str) -> None:
    cfg = parse_config(make_config(network={"policyEngine": engine, "acknowledgeUnenforcedJobIsolation": True}))
    assert cfg.network.policy_engine == engine


def test_disabled_network_policies_need_no_engine() -> None:
    assert parse_config(make_config(network={"enabled": False, "policyEngine": None})).network.enabled is False


@pytest.mark.parametrize(
    ("priority", "expected"),
    [
        ({"value": 1000000001}, "runner.jobPriority.value = 1000000001: Input should be less than or equal to 1000000000"),
        ({"value": 2000001000}, "runner.jobPriority.value = 2000001000"),  # system-node-critical's value
        ({"preemptionPolicy": "Always"}, "runner.jobPriority.preemptionPolicy"),
    ],
)
def test_job_priority_stays_out_of_the_system_range(priority: dict, expected: str) -> None:
    assert expected in error_of(make_config(runner={"scope": SCOPE, "jobPriority": priority}))
