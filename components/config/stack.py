"""The whole stack configuration and the rules that span its sections."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import model_validator

from .base import ConfigModel, RuleViolation
from .builders import BuildersConfig
from .credentials import CredentialsConfig
from .fields import is_pinned_image, largest_quantity, parse_quantity
from .gitlab import GitlabConfig
from .kubernetes import KubernetesConfig
from .network import NetworkConfig
from .preview import PreviewConfig
from .registry import RegistryConfig
from .runner import RunnerConfig

Environment = Literal["dev", "staging", "prod"]


class StackConfig(ConfigModel):
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
    preview: PreviewConfig = PreviewConfig()
    """Read-only identity for `pulumi preview` from protected branches of this repository."""
    builders: BuildersConfig = BuildersConfig()
    """Where builds run: a daemon per job (ephemeral, the default) or a warm daemon per project."""

    @model_validator(mode="after")
    def _prod_is_pinned_and_protected(self) -> StackConfig:
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
    def _oidc_subjects_name_application_projects(self) -> StackConfig:
        projects = self.registry.projects()
        for index, subject in enumerate(self.credentials.oidc_subjects):
            if subject.project_path not in projects:
                raise RuleViolation(
                    f"credentials.oidcSubjects.{index}.projectPath",
                    subject.project_path,
                    f"is not the project of any application ({', '.join(sorted(projects))}): each project's role trusts only its own refs",
                )
            if self.environment != "dev" and "*" in subject.ref and subject.ref_type == "branch":
                raise RuleViolation(
                    f"credentials.oidcSubjects.{index}.ref",
                    subject.ref,
                    "is a branch pattern: outside dev only exact branches are trusted (an IAM trust policy cannot "
                    "test whether a ref is protected: STS exposes only the token's aud and sub, and anyone who can "
                    "push a matching branch could assume the push role); list each protected branch. Tag patterns "
                    "(refType: tag, e.g. 'v*') are accepted: the deploy job refuses to apply them unless a "
                    "protected-tag rule covers them (cicd.check_protected_refs --require)",
                )
        if self.credentials.mode == "oidc":
            trusted = {s.project_path for s in self.credentials.oidc_subjects}
            for path in projects:
                if path not in trusted:
                    raise RuleViolation(
                        "credentials.oidcSubjects",
                        [s.project_path for s in self.credentials.oidc_subjects],
                        f"names no ref of project {path!r}: its applications ({', '.join(projects[path])}) could never push",
                    )
        return self

    @model_validator(mode="after")
    def _runner_carries_the_environment_tag(self) -> StackConfig:
        tag = self.environment_tag
        if tag not in self.runner.tags:
            raise RuleViolation(
                "runner.tags",
                self.runner.tags,
                f"must contain {tag!r} (gitlab.environmentScope, else environment): the build template tags every job "
                "with its environment input, so that a job, and the credentials it carries, run only on its own "
                "environment's runner (GitLab runs a job on a runner that has all of the job's tags)",
            )
        return self

    @model_validator(mode="after")
    def _warm_builders_fit(self) -> StackConfig:
        if self.builders.mode != "warm":
            return self
        namespace = self.builders.warm.namespace
        if namespace in (self.kubernetes.manager_namespace, self.kubernetes.job_namespace):
            raise RuleViolation(
                "builders.warm.namespace",
                namespace,
                "must differ from kubernetes.managerNamespace and kubernetes.jobNamespace: the daemons take connections from "
                "the job namespace, which admits no ingress at all",
            )
        return self

    def needs_oidc_provider(self) -> bool:
        """ID tokens are exchanged for AWS roles: push roles (oidc mode) or the preview role."""
        return self.credentials.mode == "oidc" or self.preview.project_path is not None

    @model_validator(mode="after")
    def _oidc_provider_is_used_and_names_the_gitlab_host(self) -> StackConfig:
        creds = self.credentials
        chosen = "oidcProviderArn" if creds.oidc_provider_arn else "oidcProvider" if creds.oidc_provider != "create" else None
        if chosen and not self.needs_oidc_provider():
            value = creds.oidc_provider_arn or creds.oidc_provider
            raise RuleViolation(
                f"credentials.{chosen}",
                value,
                "is not used: only credentials.mode 'oidc' or preview.projectPath exchange ID tokens for roles",
            )
        arn = creds.oidc_provider_arn
        if arn is not None:
            resource = arn.split(":", 5)[-1]
            account = arn.split(":")[4] if arn.count(":") >= 5 else ""
            if (
                not arn.startswith("arn:aws")
                or ":iam::" not in arn
                or resource != f"oidc-provider/{self.gitlab.host}"
                or not account.isdigit()
            ):
                raise RuleViolation(
                    "credentials.oidcProviderArn",
                    arn,
                    f"must be the IAM OIDC provider of gitlab.url's host: arn:<partition>:iam::<account>:oidc-provider/{self.gitlab.host} "
                    "(a provider for another host never accepts this GitLab's ID tokens)",
                )
        return self

    @model_validator(mode="after")
    def _network_policy_engine_is_named(self) -> StackConfig:
        # Here, not in NetworkConfig: its default instance (no section at all) must stay constructible.
        if "network" not in self.model_fields_set:
            raise RuleViolation(
                "network",
                None,
                "is required, with at least policyEngine: the cluster's NetworkPolicy engine ('calico', 'cilium', 'vpc-cni' or 'none')",
            )
        if self.network.enabled and self.network.policy_engine is None:
            raise RuleViolation(
                "network.policyEngine",
                None,
                "is required: name the cluster's NetworkPolicy engine ('calico', 'cilium', 'vpc-cni' or 'none'); the job "
                "isolation the stack's NetworkPolicies describe holds only where the engine enforces them on job pods",
            )
        return self

    @model_validator(mode="after")
    def _environment_scope_is_exact_outside_dev(self) -> StackConfig:
        scope = self.gitlab.environment_scope
        if scope is not None and self.environment != "dev" and "*" in scope:
            # GitLab matches environment scopes as wildcards: '*' (or 'prod*') hands this environment's
            # push credentials to jobs of every (matching) environment, review apps included.
            # Ref: https://docs.gitlab.com/ci/environments/#limit-the-environment-scope-of-a-cicd-variable
            raise RuleViolation(
                "gitlab.environmentScope",
                scope,
                f"is a wildcard: outside dev the variables go to one exact environment (unset uses {self.environment!r}), "
                "or every matching environment's jobs receive this environment's credentials",
            )
        return self

    @model_validator(mode="after")
    def _oidc_issuer_has_no_port(self) -> StackConfig:
        if self.credentials.mode == "oidc" and ":" in self.gitlab.url.removeprefix("https://"):
            raise ValueError(
                f"gitlab.url {self.gitlab.url!r} has a port: with credentials.mode 'oidc' it is the OIDC issuer, "
                "whose IAM condition keys are '<host>:aud'/'<host>:sub'; serve GitLab on 443"
            )
        return self

    @model_validator(mode="after")
    def _job_quota_fits_concurrent_jobs(self) -> StackConfig:
        """`runner.concurrent` job pods must fit the quota, or the jobs over it fail with 'exceeded quota'.

        A pod counts max(sum of its containers, largest init container) against `limits.*`
        (Ref: https://kubernetes.io/docs/concepts/policy/resource-quotas/ and the pod's effective
        requests/limits in https://kubernetes.io/docs/concepts/workloads/pods/init-containers/): the
        build container (at the highest a job may raise it) plus the helper, plus one service when
        services are allowed; the init-permissions container has the helper's resources.
        """
        quota = self.kubernetes.job_quota
        if quota is None:
            return self
        runner = self.runner
        build, helper = runner.build_resources, runner.helper_resources
        sidecars = 2 if runner.allowed_services else 1  # the helper, and one service when allowed
        per_pod = {
            "cpu": (largest_quantity(build.cpu_limit, runner.cpu_limit_overwrite_max), helper.cpu_limit),
            "memory": (largest_quantity(build.memory_limit, runner.memory_limit_overwrite_max), helper.memory_limit),
            "ephemeralStorage": (build.ephemeral_storage_limit, helper.ephemeral_storage_limit),
        }
        concurrent = runner.concurrent
        if quota.pods < concurrent:
            raise RuleViolation(
                "kubernetes.jobQuota.pods",
                quota.pods,
                f"is below runner.concurrent ({concurrent}): the jobs over it would fail with 'exceeded quota'; "
                f"raise kubernetes.jobQuota.pods to at least {concurrent} or lower runner.concurrent",
            )
        for key, (build_limit, helper_limit) in per_pod.items():
            if build_limit is None or helper_limit is None:
                continue  # no limit set: the quota does not count this resource for the pod
            pod = parse_quantity(build_limit) + sidecars * parse_quantity(helper_limit)
            needed = pod * concurrent
            allowed = parse_quantity(getattr(quota, "ephemeral_storage" if key == "ephemeralStorage" else key))
            if needed > allowed:
                fits = int(allowed // pod)
                raise RuleViolation(
                    f"kubernetes.jobQuota.{key}",
                    getattr(quota, "ephemeral_storage" if key == "ephemeralStorage" else key),
                    f"runner.concurrent ({concurrent}) x per-pod limit {_human(pod, key)} (build {build_limit} + "
                    f"{sidecars} x helper {helper_limit}) = {_human(needed, key)} exceeds it; raise "
                    f"kubernetes.jobQuota.{key} to at least {_human(needed, key)} or lower runner.concurrent to {fits}",
                )
        return self

    @property
    def environment_tag(self) -> str:
        """The runner tag the build template's jobs of this environment carry: the exact environment scope
        (a wildcard scope, dev only, falls back to the environment name)."""
        scope = self.environment_scope
        return self.environment if "*" in scope else scope

    @property
    def environment_scope(self) -> str:
        return self.gitlab.environment_scope or self.environment


def _human(value: Decimal, key: str) -> str:
    """A quantity for a message: cores as a plain number, bytes in Gi (or Mi below 1Gi)."""
    if key == "cpu":
        return f"{value.normalize():f}"
    gib = value / 2**30
    return f"{gib.normalize():f}Gi" if gib >= 1 else f"{(value / 2**20).normalize():f}Mi"
