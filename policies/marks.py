"""The marks the pack reads on resources the stack creates, restated here on purpose.

The pack runs in its own process and never imports the stack's code; these must equal the stack's
``components/marks.py`` (tests/test_contracts.py ties them).
"""

PSA_LABEL_PREFIX = "pod-security.kubernetes.io"
PSA_ENFORCE = f"{PSA_LABEL_PREFIX}/enforce"
# On a job namespace: 'unconfined' means the stack config acknowledged the unconfined job security mode.
JOB_SECURITY_MODE_ANNOTATION = "gitlab-buildkit-runner/job-security-mode"
# On an ECR repository (AWS tag): BUILD_CACHE_ROLE marks the one repository whose tags may move.
REPOSITORY_ROLE_TAG = "gitlab-buildkit-runner/repository-role"
BUILD_CACHE_ROLE = "buildkit-cache"
