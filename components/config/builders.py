"""Where builds run: a fresh rootless BuildKit daemon per job (ephemeral), or one long-lived rootless
daemon per application project and environment that its jobs reach over mTLS (warm)."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import Field, model_validator

from .base import ConfigModel, RuleViolation
from .fields import ByteQuantity, DnsLabel, Quantity, parse_quantity

BuilderMode = Literal["ephemeral", "warm"]


class WarmBuilderConfig(ConfigModel):
    """One rootless buildkitd (StatefulSet of one) per application project, in the job namespace."""

    namespace: DnsLabel = "gitlab-runner-builders"
    """The stack's builders namespace (PSA baseline): the daemons, their volumes, certificates and Services."""
    storage: ByteQuantity = "50Gi"
    """Size of the daemon's persistent volume (its cache, cache mounts and layers)."""
    storage_class_name: str | None = Field(default=None, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=253)
    """StorageClass of the volume; unset uses the cluster's default."""
    gc_max_used_space: ByteQuantity | None = None
    """BuildKit garbage collection: the state it keeps at most (maxUsedSpace); unset is 70% of storage.
    Must leave room below storage for one build's new layers."""
    cpu_request: Quantity = "1"
    """CPU request of the daemon."""
    cpu_limit: Quantity = "4"
    """CPU limit of the daemon."""
    memory_request: ByteQuantity = "2Gi"
    """Memory request of the daemon."""
    memory_limit: ByteQuantity = "8Gi"
    """Memory limit of the daemon."""
    certificate_validity_days: int = Field(default=90, ge=7, le=397)
    """Validity of the daemon's server certificate and its project's client certificate (days)."""
    certificate_renew_before_days: int = Field(default=30, ge=1)
    """Renew both that many days before they end (the next `pulumi up`; the drift job reports it)."""

    @model_validator(mode="after")
    def _sizes_fit(self) -> WarmBuilderConfig:
        storage = parse_quantity(self.storage)
        if self.gc_max_used_space is not None and parse_quantity(self.gc_max_used_space) > storage * Decimal("0.9"):
            raise RuleViolation(
                "gcMaxUsedSpace",
                self.gc_max_used_space,
                f"must be at most 90% of storage {self.storage!r}: the garbage collector runs after builds, so the volume "
                "needs room for one build's new layers above it",
            )
        for resource in ("cpu", "memory"):
            request, limit = getattr(self, f"{resource}_request"), getattr(self, f"{resource}_limit")
            if parse_quantity(request) > parse_quantity(limit):
                raise RuleViolation(
                    f"{resource}Request", request, f"exceeds {resource}Limit {limit!r}: a request must not be above its limit"
                )
        if self.certificate_renew_before_days >= self.certificate_validity_days:
            raise RuleViolation(
                "certificateRenewBeforeDays",
                self.certificate_renew_before_days,
                f"must be below certificateValidityDays ({self.certificate_validity_days}): otherwise every `pulumi up` renews",
            )
        return self

    def max_used_bytes(self) -> int:
        if self.gc_max_used_space is not None:
            return int(parse_quantity(self.gc_max_used_space))
        return int(parse_quantity(self.storage) * Decimal("0.7"))


class BuildersConfig(ConfigModel):
    mode: BuilderMode = "ephemeral"
    """'ephemeral' (each job starts its own rootless daemon) or 'warm' (one long-lived rootless daemon per
    application project, reached over mTLS; compiler caches and cache mounts persist between its jobs)."""
    warm: WarmBuilderConfig = WarmBuilderConfig()
    """The warm daemons (mode 'warm')."""
