"""Kubernetes: the provider's context, the two namespaces, their Pod Security version and the job quota."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from ..marks import MIN_POD_SECURITY_VERSION
from .base import ConfigModel, RuleViolation
from .fields import PSA_VERSION, ByteQuantity, DnsLabel, Quantity, matching, parse_quantity


class Resources(ConfigModel):
    """CPU/memory (and ephemeral storage) requests and limits of one container."""

    cpu_request: Quantity
    """CPU request (Kubernetes quantity)."""
    cpu_limit: Quantity
    """CPU limit."""
    memory_request: ByteQuantity
    """Memory request."""
    memory_limit: ByteQuantity
    """Memory limit."""
    ephemeral_storage_request: ByteQuantity | None = None
    """Ephemeral-storage request (BuildKit state lives on node disk)."""
    ephemeral_storage_limit: ByteQuantity | None = None
    """Ephemeral-storage limit; the kubelet evicts a build that exceeds it."""

    @model_validator(mode="after")
    def _requests_do_not_exceed_limits(self) -> Resources:
        # The API server refuses such a pod ("must be less than or equal to ... limit"): found at the
        # first job, not at `pulumi up`.
        for resource in ("cpu", "memory", "ephemeral_storage"):
            request, limit = getattr(self, f"{resource}_request"), getattr(self, f"{resource}_limit")
            if request is not None and limit is not None and parse_quantity(request) > parse_quantity(limit):
                name = "".join(part.title() if i else part for i, part in enumerate(resource.split("_")))
                raise RuleViolation(f"{name}Request", request, f"exceeds {name}Limit {limit!r}: a request must not be above its limit")
        return self


class JobQuota(ConfigModel):
    """ResourceQuota of the job namespace: a ceiling for all concurrent builds together."""

    cpu: Quantity = "16"
    """Sum of CPU limits of all job pods."""
    memory: ByteQuantity = "64Gi"
    """Sum of memory limits of all job pods."""
    ephemeral_storage: ByteQuantity = "200Gi"
    """Sum of ephemeral-storage limits of all job pods."""
    pods: int = Field(20, ge=1, le=1000)
    """Maximum number of job pods at once."""


class KubernetesConfig(ConfigModel):
    context: str | None = None
    """kubeconfig context of the explicit Kubernetes provider; unset uses the current context."""
    manager_namespace: DnsLabel = "gitlab-runner"
    """Namespace of the runner manager (PSA restricted)."""
    job_namespace: DnsLabel = "gitlab-runner-jobs"
    """Namespace of CI job pods (PSA baseline, or privileged in the acknowledged unconfined mode)."""
    # Ref: https://kubernetes.io/docs/concepts/security/pod-security-admission/#pod-security-admission-labels-for-namespaces
    pod_security_version: Annotated[str, matching(PSA_VERSION, "a pinned Kubernetes minor such as 'v1.33' (not 'latest')")] = "v1.33"
    """Pinned Pod Security Standards version for the enforce/warn/audit -version labels."""
    job_quota: JobQuota | None = None
    """Optional ResourceQuota for the job namespace; unset creates none."""
    job_automount_service_account_token: bool = False
    """Mount an API token into job pods (off: job code comes from every branch)."""

    @model_validator(mode="after")
    def _pod_security_version_is_recent(self) -> KubernetesConfig:
        if int(self.pod_security_version.split(".")[1]) < int(MIN_POD_SECURITY_VERSION.split(".")[1]):
            raise RuleViolation(
                "podSecurityVersion",
                self.pod_security_version,
                f"is older than {MIN_POD_SECURITY_VERSION}: under older Pod Security Standards PSA skips checks the stack relies on "
                "(seccomp, capabilities, AppArmor fields); a version newer than the cluster is evaluated as its latest",
            )
        return self

    @model_validator(mode="after")
    def _namespaces_are_distinct(self) -> KubernetesConfig:
        if self.manager_namespace == self.job_namespace:
            raise ValueError(
                f"jobNamespace {self.job_namespace!r} must differ from managerNamespace: the manager runs "
                "under PSA 'restricted', rootless BuildKit jobs cannot"
            )
        return self
