"""The stack configuration: one frozen pydantic model, validated before any resource exists.

Every key lives in the project namespace (``gitlab-buildkit-runner:<key>``) and is documented in
``Pulumi.yaml``. Unknown keys, bad values and broken cross-field rules all fail in
:func:`load_config`, with a message that names the key, the value and what is allowed.
"""

from __future__ import annotations

import contextlib
import fnmatch
import ipaddress
import json
import re
import typing
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel

PROJECT = "gitlab-buildkit-runner"
SECRET_KEYS = frozenset({"gitlabToken"})

Environment = Literal["dev", "staging", "prod"]
JobSecurityMode = Literal["baseline", "unconfined"]
RunnerType = Literal["project_type", "group_type", "instance_type"]
CredentialsMode = Literal["access-key", "oidc"]
KeySlot = Literal["blue", "green"]

# Ref: https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_CreateRepository.html
_ECR_NAME = re.compile(r"^(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_K8S_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$")
_AWS_REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-[0-9]$")
_ARN = re.compile(r"^arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:[0-9]{0,12}:.+$")
_SEMVER = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+$")
_PSA_VERSION = re.compile(r"^v1\.[0-9]{2}$")
_RUNNER_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_HOSTNAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([-a-z0-9]*[a-z0-9])?)(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_GITLAB_PATH = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.-]*(/[A-Za-z0-9_.][A-Za-z0-9_.-]*)*$")
_IMAGE = re.compile(
    r"^(?P<repo>[a-z0-9]+(?:[._/-][a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(?:@(?P<digest>sha256:[a-f0-9]{64}))?$"
)
# Tags that move: an image pinned to one of these is not pinned.
FLOATING_TAGS = frozenset({"latest", "rootless", "master", "master-rootless", "edge", "nightly"})


def _check(pattern: re.Pattern[str], allowed: str) -> Any:
    def validate(value: str) -> str:
        if not pattern.match(value):
            raise ValueError(f"must be {allowed}")
        return value

    return AfterValidator(validate)


def _cidr(value: str) -> str:
    try:
        network = ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise ValueError(f"must be an IPv4 or IPv6 CIDR with no host bits set ({exc})") from None
    return str(network)


DnsLabel = Annotated[str, Field(max_length=63), _check(_DNS_LABEL, "a DNS label (lowercase a-z, 0-9, '-')")]
Quantity = Annotated[str, _check(_K8S_QUANTITY, "a Kubernetes quantity such as 500m, 2, 512Mi or 10Gi")]
Cidr = Annotated[str, AfterValidator(_cidr)]
Arn = Annotated[str, _check(_ARN, "an AWS ARN (arn:aws:<service>:<region>:<account>:<resource>)")]
GitlabPath = Annotated[str, _check(_GITLAB_PATH, "a GitLab path such as 'group/subgroup/project'")]


def split_image(image: str) -> tuple[str, str | None, str | None]:
    """Return (repository, tag, digest) of an image reference; raises ValueError if malformed."""
    match = _IMAGE.match(image)
    if not match:
        raise ValueError("must be an image reference such as 'moby/buildkit:v0.25.1-rootless' or '...@sha256:<64 hex>'")
    return match["repo"], match["tag"], match["digest"]


def is_pinned_image(image: str) -> bool:
    _, tag, digest = split_image(image)
    return digest is not None or (tag is not None and tag not in FLOATING_TAGS)


def _image(value: str) -> str:
    split_image(value)
    return value


ImageRef = Annotated[str, AfterValidator(_image)]
# Ref: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#syntax-and-character-set
LabelKey = Annotated[
    str,
    _check(
        re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"),
        "a label key such as 'kubernetes.io/arch'",
    ),
]
LabelValue = Annotated[
    str, _check(re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$"), "a label value (63 characters of A-Za-z0-9 . _ -)")
]


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True, extra="forbid", use_attribute_docstrings=True)


class Resources(_Model):
    """CPU/memory (and ephemeral storage) requests and limits of one container."""

    cpu_request: Quantity
    """CPU request (Kubernetes quantity)."""
    cpu_limit: Quantity
    """CPU limit."""
    memory_request: Quantity
    """Memory request."""
    memory_limit: Quantity
    """Memory limit."""
    ephemeral_storage_request: Quantity | None = None
    """Ephemeral-storage request (BuildKit state lives on node disk)."""
    ephemeral_storage_limit: Quantity | None = None
    """Ephemeral-storage limit; the kubelet evicts a build that exceeds it."""


class JobQuota(_Model):
    """ResourceQuota of the job namespace: a ceiling for all concurrent builds together."""

    cpu: Quantity = "16"
    """Sum of CPU limits of all job pods."""
    memory: Quantity = "64Gi"
    """Sum of memory limits of all job pods."""
    ephemeral_storage: Quantity = "200Gi"
    """Sum of ephemeral-storage limits of all job pods."""
    pods: int = Field(20, ge=1, le=1000)
    """Maximum number of job pods at once."""


class KubernetesConfig(_Model):
    context: str | None = None
    """kubeconfig context of the explicit Kubernetes provider; unset uses the current context."""
    manager_namespace: DnsLabel = "gitlab-runner"
    """Namespace of the runner manager (PSA restricted)."""
    job_namespace: DnsLabel = "gitlab-runner-jobs"
    """Namespace of CI job pods (PSA baseline, or privileged in the acknowledged unconfined mode)."""
    # Ref: https://kubernetes.io/docs/concepts/security/pod-security-admission/#pod-security-admission-labels-for-namespaces
    pod_security_version: Annotated[str, _check(_PSA_VERSION, "a pinned Kubernetes minor such as 'v1.33' (not 'latest')")] = "v1.33"
    """Pinned Pod Security Standards version for the enforce/warn/audit -version labels."""
    job_quota: JobQuota | None = None
    """Optional ResourceQuota for the job namespace; unset creates none."""
    job_automount_service_account_token: bool = False
    """Mount an API token into job pods (off: job code comes from every branch)."""

    @model_validator(mode="after")
    def _distinct_namespaces(self) -> KubernetesConfig:
        if self.manager_namespace == self.job_namespace:
            raise ValueError(
                f"jobNamespace {self.job_namespace!r} must differ from managerNamespace: the manager runs "
                "under PSA 'restricted', rootless BuildKit jobs cannot"
            )
        return self


class RunnerScope(_Model):
    type: RunnerType = "project_type"
    """Runner type: project_type, group_type or instance_type."""
    project_id: int | None = Field(None, ge=1)
    """Numeric project id (project_type only)."""
    group_id: int | None = Field(None, ge=1)
    """Numeric group id (group_type only)."""

    @model_validator(mode="after")
    def _ids_match_type(self) -> RunnerScope:
        wanted = {"project_type": "project_id", "group_type": "group_id", "instance_type": None}[self.type]
        for field in ("project_id", "group_id"):
            present = getattr(self, field) is not None
            if field == wanted and not present:
                raise ValueError(f"type {self.type!r} needs {to_camel(field)}")
            if field != wanted and present:
                raise ValueError(f"type {self.type!r} does not take {to_camel(field)}")
        return self


class RunnerConfig(_Model):
    chart_version: Annotated[str, _check(_SEMVER, "an exact chart version such as '0.86.0'")] = "0.86.0"
    """Exact version of the gitlab-runner chart."""
    chart_repository: Annotated[str, _check(re.compile(r"^https://\S+$"), "an https:// URL")] = "https://charts.gitlab.io"
    """Helm repository of the chart."""
    manager_image_tag: (
        Annotated[str, _check(re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"), "an image tag such as 'alpine-v18.9.0'")] | None
    ) = None
    """gitlab-runner image tag for the manager; unset uses the chart's appVersion."""
    job_image: ImageRef = "moby/buildkit:v0.25.1-rootless"
    """Default job image (rootless BuildKit); prod requires a version tag or digest."""
    allowed_images: list[
        Annotated[str, _check(re.compile(r"^[a-z0-9*][a-z0-9._/:@*-]*$"), "an image pattern such as 'moby/buildkit:*rootless*'")]
    ] = Field(default=["moby/buildkit:*rootless*"], min_length=1)
    """Images a job may choose (runner allowed_images, doublestar patterns): the build container's
    relaxed security context applies to whatever image a job runs, so only rootless BuildKit."""
    helper_image: ImageRef | None = None
    """Helper image override; unset uses the runner's default helper."""
    scope: RunnerScope
    """Where the runner is registered (gitlab.UserRunner)."""
    description: str = Field("rootless BuildKit runner", min_length=1, max_length=255)
    """Runner description shown in GitLab (the environment is appended)."""
    tags: list[Annotated[str, _check(_RUNNER_TAG, "a runner tag of letters, digits, '_', '.', '-'")]] = ["buildkit"]
    """Runner tags; jobs select the runner with these."""
    run_untagged: bool = False
    """Also pick jobs without tags."""
    protected_only: bool = False
    """Only run jobs on protected branches and tags (access_level ref_protected)."""
    maximum_timeout_seconds: int = Field(3600, ge=600, le=86400)
    """Longest job the runner accepts; also sets the manager's graceful-shutdown period."""
    concurrent: int = Field(10, ge=1, le=500)
    """Maximum concurrent jobs of this runner manager."""
    check_interval_seconds: int = Field(3, ge=1, le=3600)
    """Seconds between job polls."""
    poll_timeout_seconds: int = Field(600, ge=30, le=3600)
    """Seconds the runner waits for a job pod to start."""
    job_security_mode: JobSecurityMode = "baseline"
    """'baseline' (no explicit seccomp/AppArmor; job namespace PSA baseline) or 'unconfined' (both Unconfined on the build container; job namespace PSA privileged)."""
    acknowledge_unconfined: bool = False
    """Must be true to use jobSecurityMode 'unconfined'."""
    build_resources: Resources = Resources(
        cpu_request="1",
        cpu_limit="4",
        memory_request="2Gi",
        memory_limit="8Gi",
        ephemeral_storage_request="10Gi",
        ephemeral_storage_limit="40Gi",
    )
    """Requests/limits of the build container (also the job namespace LimitRange defaults)."""
    helper_resources: Resources = Resources(cpu_request="100m", cpu_limit="500m", memory_request="128Mi", memory_limit="256Mi")
    """Requests/limits of the helper and service containers."""
    manager_resources: Resources = Resources(cpu_request="100m", cpu_limit="500m", memory_request="128Mi", memory_limit="512Mi")
    """Requests/limits of the runner manager pod."""
    buildkit_state_size_limit: Quantity = "30Gi"
    """Size limit of the emptyDir holding BuildKit state."""
    metrics_enabled: bool = True
    """Expose runner metrics on :9252."""
    pod_monitor: bool = False
    """Create a PodMonitor (needs the Prometheus Operator CRDs; the chart skips it otherwise)."""
    # Safe overwrites only: a job may ask for more CPU/memory up to these maxima. The settings that
    # let a job relax security (namespace, service account, bearer token, annotations) are not offered.
    cpu_limit_overwrite_max: Quantity | None = None
    """Let jobs raise their CPU limit up to this (KUBERNETES_CPU_LIMIT); unset forbids it."""
    memory_limit_overwrite_max: Quantity | None = None
    """Let jobs raise their memory limit up to this; unset forbids it."""
    node_selector: dict[LabelKey, LabelValue] = {}
    """Node selector for job pods and the manager (e.g. nodes with user namespaces enabled)."""

    @model_validator(mode="after")
    def _rules(self) -> RunnerConfig:
        if self.job_security_mode == "unconfined" and not self.acknowledge_unconfined:
            raise ValueError(
                "jobSecurityMode 'unconfined' labels the job namespace PSA 'privileged' and runs builds "
                "without seccomp/AppArmor; set acknowledgeUnconfined: true to accept that"
            )
        if self.acknowledge_unconfined and self.job_security_mode != "unconfined":
            raise ValueError("acknowledgeUnconfined is only meaningful with jobSecurityMode 'unconfined'")
        if not any(fnmatch.fnmatchcase(self.job_image, pattern) for pattern in self.allowed_images):
            raise ValueError(f"jobImage {self.job_image!r} is not matched by allowedImages {self.allowed_images}")
        if not self.tags and not self.run_untagged:
            raise ValueError("tags is empty and runUntagged is false: the runner could never pick a job")
        if len(set(self.tags)) != len(self.tags):
            raise ValueError(f"tags {self.tags} contain duplicates")
        return self


class Lifecycle(_Model):
    untagged_expire_days: int = Field(7, ge=1, le=3650)
    """Application repositories: expire untagged images after this many days."""
    keep_tagged_count: int = Field(100, ge=1, le=10000)
    """Application repositories: keep this many newest images."""
    cache_expire_days: int = Field(14, ge=1, le=3650)
    """Cache repository: expire cache images not pushed for this many days."""


def _ecr_name(value: str) -> str:
    if not 2 <= len(value) <= 256 or not _ECR_NAME.match(value):
        raise ValueError(
            "must be an ECR repository name: 2-256 characters, lowercase letters and digits, separated by single '.', '_', '-' or '/'"
        )
    return value


EcrName = Annotated[str, AfterValidator(_ecr_name)]


class RegistryConfig(_Model):
    region: Annotated[str, _check(_AWS_REGION, "an AWS region such as 'eu-west-1'")]
    """AWS region of the repositories (also the explicit AWS provider's region)."""
    repository_prefix: EcrName | None = None
    """Prefix of every repository name: '<prefix>/<application>'."""
    applications: list[EcrName] = Field(min_length=1)
    """Application repository names (ECR rules); one CI variable ECR_REPOSITORY_<NAME> each."""
    cache_repository: EcrName = "buildkit-cache"
    """Name of the BuildKit cache repository (after the prefix)."""
    image_tag_mutability: Literal["IMMUTABLE", "MUTABLE"] = "IMMUTABLE"
    """Tag mutability of application repositories; prod requires IMMUTABLE."""
    cache_tag_mutability: Literal["MUTABLE", "IMMUTABLE_WITH_EXCLUSION"] = "MUTABLE"
    """Cache repository: MUTABLE, or IMMUTABLE_WITH_EXCLUSION with a 'cache-*' exclusion."""
    encryption: Literal["AES256", "KMS"] = "AES256"
    """Repository encryption: AES256 or KMS."""
    kms_key_arn: Arn | None = None
    """KMS key ARN (required with encryption KMS)."""
    lifecycle: Lifecycle = Lifecycle()
    """Lifecycle policy parameters."""
    protect: bool = False
    """Protect repositories and the push identity from deletion (prod requires true)."""
    force_delete: bool = False
    """Allow deleting repositories that still hold images (prod requires false)."""
    pull_principals: list[Arn] = []
    """IAM principal ARNs allowed to pull (repository policy); empty creates none."""

    @model_validator(mode="after")
    def _rules(self) -> RegistryConfig:
        if len(set(self.applications)) != len(self.applications):
            dupes = sorted({a for a in self.applications if self.applications.count(a) > 1})
            raise ValueError(f"applications has duplicates: {dupes}")
        keys: dict[str, str] = {}
        for app in self.applications:
            key = variable_suffix(app)
            if key in keys:
                raise ValueError(f"applications {keys[key]!r} and {app!r} map to the same CI variable ECR_REPOSITORY_{key}; rename one")
            keys[key] = app
        if self.cache_repository in self.applications:
            raise ValueError(f"cacheRepository {self.cache_repository!r} is also an application")
        if (self.encryption == "KMS") != (self.kms_key_arn is not None):
            raise ValueError("kmsKeyArn is required with encryption 'KMS' and not allowed with 'AES256'")
        for name in self.repository_names():
            if len(name) > 256:
                raise ValueError(f"repository name {name!r} (prefix + name) is longer than 256 characters")
        return self

    def repository_name(self, app: str) -> str:
        return f"{self.repository_prefix}/{app}" if self.repository_prefix else app

    def repository_names(self) -> list[str]:
        return [self.repository_name(a) for a in [*self.applications, self.cache_repository]]


def variable_suffix(app: str) -> str:
    """CI variable suffix of an application: 'web-api' -> 'WEB_API' (ECR_REPOSITORY_WEB_API)."""
    return re.sub(r"[^A-Z0-9]", "_", app.upper())


class OidcSubject(_Model):
    """One `sub` claim the role trusts: project_path:<project>:ref_type:<type>:ref:<ref>."""

    project_path: GitlabPath
    """GitLab project path, e.g. 'group/project'."""
    ref_type: Literal["branch", "tag"] = "branch"
    """'branch' or 'tag'."""
    ref: Annotated[str, _check(re.compile(r"^[A-Za-z0-9_.*/-]+$"), "a branch/tag name or pattern of A-Za-z0-9_.*/-")]
    """Branch or tag name; '*' makes it a StringLike pattern."""


class CredentialsConfig(_Model):
    mode: CredentialsMode = "access-key"
    """'access-key' (IAM user + key in masked CI variables) or 'oidc' (role assumed with GitLab ID tokens)."""
    # access-key mode: key slots that exist, and the one the CI variables point at (rotation).
    access_key_slots: list[KeySlot] = ["blue"]
    """Access keys that exist (1 or 2 of 'blue', 'green'); two during a rotation."""
    active_access_key: KeySlot = "blue"
    """The slot the CI variables point at."""
    # oidc mode
    oidc_provider_arn: Arn | None = None
    """Existing IAM OIDC provider for the GitLab host; unset creates one."""
    oidc_subjects: list[OidcSubject] = []
    """Project refs allowed to assume the push role."""

    @model_validator(mode="after")
    def _rules(self) -> CredentialsConfig:
        if self.mode == "access-key":
            if not self.access_key_slots or len(set(self.access_key_slots)) != len(self.access_key_slots):
                raise ValueError(f"accessKeySlots {self.access_key_slots} must name 1 or 2 distinct slots")
            if self.active_access_key not in self.access_key_slots:
                raise ValueError(f"activeAccessKey {self.active_access_key!r} is not one of accessKeySlots {self.access_key_slots}")
            if self.oidc_subjects or self.oidc_provider_arn:
                raise ValueError("oidcSubjects/oidcProviderArn are only allowed with mode 'oidc'")
        elif not self.oidc_subjects:
            raise ValueError("mode 'oidc' needs at least one entry in oidcSubjects (the refs allowed to push)")
        return self


class GitlabConfig(_Model):
    url: Annotated[str, _check(re.compile(r"^https://[a-z0-9.-]+(:[0-9]+)?$"), "an https URL with no path, e.g. 'https://gitlab.com'")]
    """GitLab base URL (https, no path); also the OIDC issuer and audience."""
    variables_project: GitlabPath | None = None
    """Project path that receives the CI/CD variables (or use variablesGroup)."""
    variables_group: GitlabPath | None = None
    """Group path that receives the CI/CD variables (or use variablesProject)."""
    environment_scope: Annotated[str, _check(re.compile(r"^[A-Za-z0-9_/*.-]+$"), "a GitLab environment name or wildcard")] | None = None
    """environment_scope of the variables; unset uses the environment name."""
    protect_variables: bool = True
    """Mark non-credential variables protected (credentials always are)."""

    @property
    def host(self) -> str:
        return self.url.removeprefix("https://").split(":")[0]

    @model_validator(mode="after")
    def _one_target(self) -> GitlabConfig:
        if (self.variables_project is None) == (self.variables_group is None):
            raise ValueError("set exactly one of variablesProject or variablesGroup (where CI variables are written)")
        return self


class NetworkConfig(_Model):
    enabled: bool = True
    """Create the NetworkPolicies (needs a CNI that enforces them)."""
    job_egress_cidrs: list[Cidr] = ["0.0.0.0/0", "::/0"]
    """Where job pods may connect (besides DNS)."""
    # Always excluded from job egress, whatever the allow-list says.
    metadata_cidrs: list[Cidr] = ["169.254.169.254/32", "fd00:ec2::254/128"]
    """Instance metadata addresses, always excluded from job egress."""
    private_cidrs: list[Cidr] = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7"]
    """Cluster/VPC ranges, always excluded from job egress."""
    api_server_cidrs: list[Cidr] = []
    """Kubernetes API server addresses: excluded for jobs, allowed for the manager."""
    api_server_port: int = Field(443, ge=1, le=65535)
    """API server port the manager may reach."""
    gitlab_cidrs: list[Cidr] = ["0.0.0.0/0", "::/0"]
    """Where the manager may reach GitLab on 443."""
    dns_namespace: DnsLabel = "kube-system"
    """Namespace of cluster DNS (pods labelled k8s-app=kube-dns)."""
    metrics_namespace: DnsLabel | None = None
    """Namespace allowed to scrape the manager's metrics; unset denies all ingress."""

    @model_validator(mode="after")
    def _rules(self) -> NetworkConfig:
        if self.enabled and not self.job_egress_cidrs:
            raise ValueError("jobEgressCidrs is empty: builds could not pull base images or push")
        return self


class StackConfig(_Model):
    environment: Environment
    """dev, staging or prod; prod enforces pinning and protection."""
    kubernetes: KubernetesConfig = KubernetesConfig()
    """Kubernetes provider and namespaces."""
    runner: RunnerConfig
    """The GitLab runner and its job pods."""
    registry: RegistryConfig
    """ECR repositories."""
    credentials: CredentialsConfig = CredentialsConfig()
    """Push identity for CI jobs."""
    gitlab: GitlabConfig
    """GitLab instance and where CI/CD variables go."""
    network: NetworkConfig = NetworkConfig()
    """NetworkPolicies for the runner namespaces."""

    @model_validator(mode="after")
    def _cross_rules(self) -> StackConfig:
        if self.environment == "prod":
            problems = []
            if not is_pinned_image(self.runner.job_image):
                problems.append(f"runner.jobImage {self.runner.job_image!r} must be pinned to a version tag or digest")
            if self.runner.helper_image and not is_pinned_image(self.runner.helper_image):
                problems.append(f"runner.helperImage {self.runner.helper_image!r} must be pinned")
            if self.registry.image_tag_mutability != "IMMUTABLE":
                problems.append("registry.imageTagMutability must be 'IMMUTABLE' (release tags must never move)")
            if not self.registry.protect:
                problems.append("registry.protect must be true (repositories and push identities are stateful)")
            if self.registry.force_delete:
                problems.append("registry.forceDelete must be false (deleting a repository must not delete images)")
            if problems:
                raise ValueError("prod rules: " + "; ".join(problems))
        return self

    @model_validator(mode="after")
    def _oidc_issuer(self) -> StackConfig:
        if self.credentials.mode == "oidc" and ":" in self.gitlab.url.removeprefix("https://"):
            raise ValueError(
                f"gitlab.url {self.gitlab.url!r} has a port: with credentials.mode 'oidc' it is the OIDC issuer, "
                "whose IAM condition keys are '<host>:aud'/'<host>:sub'; serve GitLab on 443"
            )
        return self

    @property
    def environment_scope(self) -> str:
        return self.gitlab.environment_scope or self.environment


class ConfigError(Exception):
    """Invalid stack configuration. The message is meant for the person running `pulumi up`."""


def _describe(error: Mapping[str, Any]) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "(root)"
    msg = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return f"  {PROJECT}:{key}: unknown key (a typo?); remove it or see Pulumi.yaml for the allowed keys"
    if error["type"] == "missing":
        return f"  {PROJECT}:{key}: required but not set"
    value = json.dumps(error.get("input"), default=str)
    if len(value) > 120:
        value = value[:117] + "..."
    return f"  {PROJECT}:{key} = {value}: {msg}"


def parse_config(raw: Mapping[str, Any], stack: str | None = None) -> StackConfig:
    """Validate a plain mapping of project config keys (without the namespace prefix).

    A stack named like an environment must declare that environment: a `prod` stack whose config says
    `environment: dev` would silently skip the prod rules (pinning, protection, immutability).
    """
    data = {k: v for k, v in raw.items() if k not in SECRET_KEYS}
    try:
        cfg = StackConfig.model_validate(data)
    except ValidationError as exc:
        lines = [_describe(e) for e in exc.errors(include_url=False)]
        raise ConfigError("invalid stack configuration:\n" + "\n".join(lines)) from None
    if stack in typing.get_args(Environment) and stack != cfg.environment:
        raise ConfigError(
            f"invalid stack configuration:\n  {PROJECT}:environment = {json.dumps(cfg.environment)}: "
            f"stack {stack!r} must declare environment {stack!r} (a stack named after an environment gets its rules)"
        )
    return cfg


def project_config(entries: Iterable[tuple[str, Any]], secret_keys: Iterable[str] = ()) -> dict[str, Any]:
    """Pick this project's keys from the engine's flat config ('<ns>:<key>' -> JSON string or value).

    Secret-only keys must arrive as Pulumi secrets; plain values for them are refused so a token
    never sits readable in Pulumi.<stack>.yaml.
    """
    prefix = f"{PROJECT}:"
    secrets = set(secret_keys)
    result: dict[str, Any] = {}
    for full_key, value in entries:
        if not full_key.startswith(prefix):
            continue
        key = full_key[len(prefix) :]
        if key in SECRET_KEYS:
            if full_key not in secrets:
                raise ConfigError(
                    f"invalid stack configuration:\n  {full_key}: must be set with "
                    f"`pulumi config set --secret {key} ...`, not as plain text"
                )
            continue
        if isinstance(value, str):
            with contextlib.suppress(json.JSONDecodeError):  # plain strings stay strings
                value = json.loads(value)
        result[key] = value
    return result


def load_config() -> StackConfig:
    """Read and validate the running stack's config; raises ConfigError before any resource exists."""
    from pulumi.runtime import config as runtime_config

    entries = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    secret_keys = set(runtime_config.get_config_secret_keys_env()) | set(runtime_config._SECRET_KEYS.get())
    import pulumi

    return parse_config(project_config(entries.items(), secret_keys), stack=pulumi.get_stack())
