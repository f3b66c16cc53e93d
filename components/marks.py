"""Names and marks other systems rely on, one home each on the stack's side.

The policy pack cannot import this package (it runs on its own); it restates the marks it reads in
``policies/marks.py``, and tests/test_contracts.py ties the two sides together. Where the stack and the
pack must agree on *which* resource is special (the cache repository, the acknowledged job namespace),
the stack marks the resource and the pack reads the mark; nobody matches names by pattern.
"""

from __future__ import annotations

import hashlib

PROJECT = "gitlab-buildkit-runner"

# Ref: https://kubernetes.io/docs/concepts/security/pod-security-admission/#pod-security-admission-labels-for-namespaces
PSA_LABEL_PREFIX = "pod-security.kubernetes.io"
# The oldest Pod Security Standards version any -version label may name. Under an older version PSA
# skips checks the stack relies on (seccomp at baseline before v1.19, capabilities at restricted before
# v1.22, AppArmor fields before v1.30); a version newer than the cluster is evaluated as its latest, so
# this floor costs older clusters nothing. The stack's config and the pack both enforce it.
# Ref: https://kubernetes.io/docs/concepts/security/pod-security-standards/ (policy versions per control)
MIN_POD_SECURITY_VERSION = "v1.33"
MANAGED_BY = {"app.kubernetes.io/managed-by": "pulumi", "app.kubernetes.io/part-of": PROJECT}

# On the job namespace: the job security mode the stack config chose (and acknowledged). The pack
# admits PSA 'privileged' and Unconfined profiles only in a namespace carrying 'unconfined'.
JOB_SECURITY_MODE_ANNOTATION = f"{PROJECT}/job-security-mode"
# On the builders namespace (builders.mode 'warm'): the job namespace whose pods may reach its daemons.
BUILDERS_FOR_ANNOTATION = f"{PROJECT}/builders-for"
# On the job namespace in the 'confined' mode: the exact Localhost profiles the pack admits, and only
# on the build container (seccomp: path under the kubelet's seccomp directory; AppArmor: profile name).
SECCOMP_PROFILE_ANNOTATION = f"{PROJECT}/seccomp-profile"
APPARMOR_PROFILE_ANNOTATION = f"{PROJECT}/apparmor-profile"
# On the manager pod: the GitLab runner id, so a replaced runner (new token) restarts the manager.
RUNNER_ID_ANNOTATION = f"{PROJECT}/runner-id"

# On every ECR repository (an AWS tag): what the repository is for. The pack lets only the one
# tagged as the build cache keep mutable tags, since BuildKit overwrites its cache tag every build.
REPOSITORY_ROLE_TAG = f"{PROJECT}/repository-role"
APPLICATION_ROLE = "application"
BUILD_CACHE_ROLE = "buildkit-cache"


def component_type(module: str, noun: str) -> str:
    """A component's type token, `<project>:<module>:<Noun>`. Never change one once deployed (URNs)."""
    return f"{PROJECT}:{module}:{noun}"


# On every job pod: node autoscalers must not evict a running build to scale a node down.
# Ref: https://karpenter.sh/docs/concepts/disruption/#pod-level-controls (karpenter.sh/do-not-disrupt)
# Ref: https://github.com/kubernetes/autoscaler/blob/master/cluster-autoscaler/FAQ.md (safe-to-evict)
DO_NOT_DISRUPT_ANNOTATIONS = {"karpenter.sh/do-not-disrupt": "true", "cluster-autoscaler.kubernetes.io/safe-to-evict": "false"}


def job_priority_class_name(job_namespace: str) -> str:
    """PriorityClasses are cluster-wide: one per job namespace, so two stacks in a cluster never share one."""
    return f"{PROJECT}-jobs-{job_namespace}"


def bounded_name(prefix: str, key: str, limit: int) -> str:
    """`<prefix>-<key>` (or `<key>`), shortened with a hash of the key when `limit` needs it: two keys that
    share a long start still get distinct names."""
    name = f"{prefix}-{key}" if prefix else key
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(key.encode()).hexdigest()[:8]
    return f"{name[: limit - 9].rstrip('-')}-{digest}"
