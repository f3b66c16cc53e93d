"""Field types and parsing shared by the config models: patterns, image references, quantities, CIDRs.

Every pattern is matched with ``fullmatch``: ``$`` in a Python regex also matches before a trailing
newline, so ``"web\\n"`` would pass a ``match`` against ``^...$`` and reach a resource name.
"""

from __future__ import annotations

import ipaddress
import re
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AfterValidator, Field

# Ref: https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_CreateRepository.html
ECR_NAME = re.compile(r"(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*")
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
K8S_QUANTITY = re.compile(r"([0-9]+(?:\.[0-9]+)?)(m|Ki|Mi|Gi|Ti|k|M|G|T)?")
AWS_REGION = re.compile(r"[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-[0-9]")
ARN = re.compile(r"arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:[0-9]{0,12}:[^\s]+")
SEMVER = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+")
# As PSA parses a version label (no leading zeros). Ref: https://github.com/kubernetes/pod-security-admission/blob/v0.34.4/api/helpers.go
PSA_VERSION = re.compile(r"v1\.([0-9]|[1-9][0-9]*)")
RUNNER_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
GITLAB_PATH = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.-]*(/[A-Za-z0-9_.][A-Za-z0-9_.-]*)*")
IMAGE_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
IMAGE = re.compile(
    r"(?P<repo>[a-z0-9]+(?:[._/-][a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(?:@(?P<digest>sha256:[a-f0-9]{64}))?"
)
# Tags that move: an image pinned to one of these is not pinned.
FLOATING_TAGS = frozenset({"latest", "rootless", "master", "master-rootless", "edge", "nightly"})


def matching(pattern: re.Pattern[str], allowed: str) -> Any:
    """A validator: the whole value must match `pattern`; the error says what is `allowed`."""

    def validate(value: str) -> str:
        if not pattern.fullmatch(value):
            raise ValueError(f"must be {allowed}")
        return value

    return AfterValidator(validate)


def _cidr(value: str) -> str:
    try:
        network = ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise ValueError(f"must be an IPv4 or IPv6 CIDR with no host bits set ({exc})") from None
    return str(network)


DnsLabel = Annotated[str, Field(max_length=63), matching(DNS_LABEL, "a DNS label (lowercase a-z, 0-9, '-')")]
Quantity = Annotated[str, matching(K8S_QUANTITY, "a Kubernetes quantity such as 500m, 2, 512Mi or 10Gi")]


def _bytes(value: str) -> str:
    match = K8S_QUANTITY.fullmatch(value)
    if not match or match[2] == "m":
        raise ValueError(
            "must be a byte quantity such as 512Mi, 8Gi or 40Gi (not milli-units: '8192m' is 8.192 bytes, "
            "which Kubernetes accepts and rounds up to 9)"
        )
    return value


# Memory and storage: a Kubernetes quantity without the milli suffix, which parses but means thousandths
# of a byte. Ref: https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/quantity/
ByteQuantity = Annotated[str, AfterValidator(_bytes)]
Cidr = Annotated[str, AfterValidator(_cidr)]
Arn = Annotated[str, matching(ARN, "an AWS ARN (arn:aws:<service>:<region>:<account>:<resource>)")]
GitlabPath = Annotated[str, matching(GITLAB_PATH, "a GitLab path such as 'group/subgroup/project'")]


def split_image(image: str) -> tuple[str, str | None, str | None]:
    """Return (repository, tag, digest) of an image reference; raises ValueError if malformed."""
    match = IMAGE.fullmatch(image)
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
    matching(
        re.compile(r"([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"),
        "a label key such as 'kubernetes.io/arch'",
    ),
]
LabelValue = Annotated[
    str, matching(re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?"), "a label value (63 characters of A-Za-z0-9 . _ -)")
]

_FACTORS = {
    None: Decimal(1),
    "m": Decimal("0.001"),
    "k": Decimal(10**3),
    "M": Decimal(10**6),
    "G": Decimal(10**9),
    "T": Decimal(10**12),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
}


def parse_quantity(quantity: str) -> Decimal:
    """A Kubernetes quantity as a number (cores, bytes): '500m' -> 0.5, '2Gi' -> 2147483648."""
    match = K8S_QUANTITY.fullmatch(quantity)
    if not match:
        raise ValueError(f"not a Kubernetes quantity: {quantity!r}")
    return Decimal(match[1]) * _FACTORS[match[2]]


def largest_quantity(*quantities: str | None) -> str:
    return max((q for q in quantities if q is not None), key=parse_quantity)


def _ecr_name(value: str) -> str:
    if not 2 <= len(value) <= 256 or not ECR_NAME.fullmatch(value):
        raise ValueError(
            "must be an ECR repository name: 2-256 characters, lowercase letters and digits, separated by single '.', '_', '-' or '/'"
        )
    return value


EcrName = Annotated[str, AfterValidator(_ecr_name)]
