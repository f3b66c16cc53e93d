"""The marks the pack reads on resources the stack creates, restated here on purpose.

The pack runs in its own process and never imports the stack's code; these must equal the stack's
``components/marks.py`` (tests/test_contracts.py ties them).
"""

import re

PSA_LABEL_PREFIX = "pod-security.kubernetes.io"
PSA_ENFORCE = f"{PSA_LABEL_PREFIX}/enforce"
# The oldest Pod Security Standards version a -version label may name (older versions skip checks).
MIN_POD_SECURITY_VERSION = "v1.33"
# How PSA itself parses a version label: 'latest' or v1.<minor> without leading zeros.
# Ref: https://github.com/kubernetes/pod-security-admission/blob/v0.34.4/api/helpers.go (versionRegexp)
PSA_VERSION_PATTERN = r"v1\.([0-9]|[1-9][0-9]*)"
# On a job namespace: 'unconfined' means the stack config acknowledged the unconfined job security mode.
JOB_SECURITY_MODE_ANNOTATION = "gitlab-buildkit-runner/job-security-mode"
# On the builders namespace (builders.mode 'warm'): the job namespace whose pods may reach its daemons.
BUILDERS_FOR_ANNOTATION = "gitlab-buildkit-runner/builders-for"
JOB_SECURITY_MODES = ("baseline", "confined", "unconfined")
# On a job namespace in the 'confined' mode: the exact Localhost profiles its build containers may use.
SECCOMP_PROFILE_ANNOTATION = "gitlab-buildkit-runner/seccomp-profile"
APPARMOR_PROFILE_ANNOTATION = "gitlab-buildkit-runner/apparmor-profile"
# What a profile name in those marks may look like (the stack's config enforces the same).
# Every path element starts with a letter or digit, so '.' and '..' cannot occur.
SECCOMP_PROFILE_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]*(?:/[A-Za-z0-9][A-Za-z0-9._-]*)*\.json"
APPARMOR_PROFILE_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]*"


def is_profile_name(value: object, pattern: str) -> bool:
    """A profile mark's value is well-formed (a string the whole pattern matches)."""
    return isinstance(value, str) and re.fullmatch(pattern, value) is not None


# On an ECR repository (AWS tag): BUILD_CACHE_ROLE marks the one repository whose tags may move.
REPOSITORY_ROLE_TAG = "gitlab-buildkit-runner/repository-role"
BUILD_CACHE_ROLE = "buildkit-cache"
# The PriorityClass the stack creates for a job namespace's pods: this prefix and the namespace.
JOB_PRIORITY_CLASS_PREFIX = "gitlab-buildkit-runner-jobs-"
