"""The CI/CD variable names: a contract between the stack (which writes them) and the build template
(templates/buildkit-build.yml, which reads them). Tests run the template's own shell against these.
"""

from __future__ import annotations

import re

ECR_REGISTRY = "ECR_REGISTRY"
ECR_REPOSITORY_PREFIX = "ECR_REPOSITORY_"  # + variable_suffix(app): ECR_REPOSITORY_WEB_API
CACHE_REPOSITORY = "BUILDKIT_CACHE_REPOSITORY"
AWS_DEFAULT_REGION = "AWS_DEFAULT_REGION"
AWS_ACCESS_KEY_ID = "AWS_ACCESS_KEY_ID"
AWS_SECRET_ACCESS_KEY = "AWS_SECRET_ACCESS_KEY"
AWS_ROLE_ARN = "AWS_ROLE_ARN"
# builders.mode 'warm': the project's daemon and the client certificate its jobs present (base64 PEM)
BUILDKIT_HOST = "BUILDKIT_HOST"
BUILDKIT_TLS_CA = "BUILDKIT_TLS_CA_B64"
BUILDKIT_TLS_CERT = "BUILDKIT_TLS_CERT_B64"
BUILDKIT_TLS_KEY = "BUILDKIT_TLS_KEY_B64"


def variable_suffix(app: str) -> str:
    """CI variable suffix of an application: 'web-api' -> 'WEB_API' (ECR_REPOSITORY_WEB_API)."""
    return re.sub(r"[^A-Z0-9]", "_", app.upper())


def repository_variable(app: str) -> str:
    return f"{ECR_REPOSITORY_PREFIX}{variable_suffix(app)}"
