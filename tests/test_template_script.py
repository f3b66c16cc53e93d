"""The build template's shell, executed by /bin/sh with stub `wget` and `buildctl-daemonless.sh`.

This checks the script's behaviour (arguments, tags, cache refs, credentials, checksum, error hints);
the real rootless image, S3 download and ECR push need a runner (README "Manual checks").
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
from test_ci_files import included_jobs

HELPER = b"#!/bin/sh\necho fake ecr helper\n"
REGISTRY = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
WGET = """#!/bin/sh
# wget -q -O <file> <url>
out="$3"; url="$4"
echo "$url" >> "$STUB_DIR/wget.log"
case "$url" in
  *.sha256) printf '%s  docker-credential-ecr-login\\n' "${FAKE_SHA:-$REAL_SHA}" ;;
  *) printf '#!/bin/sh\\necho fake ecr helper\\n' > "$out" ;;
esac
"""
BUILDCTL = """#!/bin/sh
for arg in "$@"; do echo "$arg"; done > "$STUB_DIR/build.args"
cp "$DOCKER_CONFIG/config.json" "$STUB_DIR/config.json"
env > "$STUB_DIR/build.env"
if [ -n "${AWS_WEB_IDENTITY_TOKEN_FILE:-}" ]; then cp "$AWS_WEB_IDENTITY_TOKEN_FILE" "$STUB_DIR/token"; fi
if [ -n "${FAKE_BUILD_ERROR:-}" ]; then echo "$FAKE_BUILD_ERROR" >&2; exit 7; fi
echo "#12 exporting to image done"
"""


def run_template(
    tmp_path: Path, *, app: str = "web-api", credentials: str = "access-key", env: dict[str, str] | None = None, **inputs: object
) -> tuple[subprocess.CompletedProcess[str], Path]:
    stubs = tmp_path / "bin"
    stubs.mkdir()
    for name, body in (("wget", WGET), ("buildctl-daemonless.sh", BUILDCTL)):
        (stubs / name).write_text(body)
        (stubs / name).chmod(0o755)
    job = included_jobs(app=app, credentials=credentials, **inputs)[f"build-image-{app}"]
    variables = {k: str(v) for k, v in job["variables"].items()}
    environment = {
        "PATH": f"{stubs}:/usr/bin:/bin",
        "HOME": str(tmp_path / "home"),
        "STUB_DIR": str(tmp_path),
        "REAL_SHA": hashlib.sha256(HELPER).hexdigest(),
        "CI_COMMIT_SHA": "0123456789abcdef0123456789abcdef01234567",
        "CI_COMMIT_SHORT_SHA": "01234567",
        "CI_COMMIT_REF_SLUG": "feature-x",
        "CI_DEFAULT_BRANCH": "Main",
        "CI_ENVIRONMENT_NAME": "production",
        "CI_PROJECT_ID": "42",
        "CI_JOB_ID": "9001",
        "ECR_REGISTRY": REGISTRY,
        "ECR_REPOSITORY_WEB_API": f"{REGISTRY}/acme/web-api",
        "BUILDKIT_CACHE_REPOSITORY": f"{REGISTRY}/acme/buildkit-cache",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "secret/example",
        **variables,
        **(env or {}),
    }
    (tmp_path / "home").mkdir()
    script = "\n".join(job["script"])
    result = subprocess.run(["sh", "-c", script], env=environment, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    return result, tmp_path


def build_args(out: Path) -> list[str]:
    return (out / "build.args").read_text().splitlines()


def test_access_key_build_arguments_tags_and_cache(tmp_path: Path) -> None:
    result, out = run_template(tmp_path, build_args="VERSION=1.2 COMMIT=abc", target="runtime", dockerfile="docker/Dockerfile")
    assert result.returncode == 0, result.stderr
    repo, cache = f"{REGISTRY}/acme/web-api", f"{REGISTRY}/acme/buildkit-cache"
    assert build_args(out) == [
        "build",
        "--frontend",
        "dockerfile.v0",
        "--local",
        "context=.",
        "--local",
        "dockerfile=docker",
        "--opt",
        "filename=Dockerfile",
        "--opt",
        "platform=linux/amd64",
        "--output",
        f'type=image,"name={repo}:0123456789abcdef0123456789abcdef01234567,{repo}:feature-x-01234567",push=true',
        "--export-cache",
        f"type=registry,ref={cache}:cache-web-api-feature-x,mode=max,image-manifest=true,oci-mediatypes=true",
        "--import-cache",
        f"type=registry,ref={cache}:cache-web-api-feature-x",
        "--import-cache",
        f"type=registry,ref={cache}:cache-web-api-main",
        "--opt",
        "target=runtime",
        "--opt",
        "build-arg:VERSION=1.2",
        "--opt",
        "build-arg:COMMIT=abc",
    ]
    assert (out / "config.json").read_text().strip() == f'{{"credHelpers": {{"{REGISTRY}": "ecr-login"}}}}'
    assert (out / "wget.log").read_text().splitlines() == [
        "https://amazon-ecr-credential-helper-releases.s3.us-east-2.amazonaws.com/0.12.0/linux-amd64/docker-credential-ecr-login",
        "https://amazon-ecr-credential-helper-releases.s3.us-east-2.amazonaws.com/0.12.0/linux-amd64/docker-credential-ecr-login.sha256",
    ]
    env = (out / "build.env").read_text()
    assert "AWS_ACCESS_KEY_ID=AKIAEXAMPLE" in env and "BUILDKITD_FLAGS=--oci-worker-no-process-sandbox" in env
    assert "secret/example" not in result.stdout + result.stderr


def test_git_tag_pipelines_push_the_plain_ref_slug(tmp_path: Path) -> None:
    result, out = run_template(tmp_path, env={"CI_COMMIT_TAG": "v1.2.3", "CI_COMMIT_REF_SLUG": "v1-2-3"})
    assert result.returncode == 0, result.stderr
    assert any(arg.endswith(f'{REGISTRY}/acme/web-api:v1-2-3",push=true') for arg in build_args(out))


def test_mutable_repositories_can_push_the_moving_ref_tag(tmp_path: Path) -> None:
    result, out = run_template(tmp_path, immutable_tags="false")
    assert result.returncode == 0, result.stderr
    assert any(arg.endswith(f'{REGISTRY}/acme/web-api:feature-x",push=true') for arg in build_args(out))


def test_oidc_writes_the_token_file_and_drops_access_keys(tmp_path: Path) -> None:
    role = "arn:aws:iam::123456789012:role/gitlab-buildkit-push-prod"
    result, out = run_template(tmp_path, credentials="oidc", env={"AWS_ROLE_ARN": role, "AWS_ID_TOKEN": "eyJhbGciOi.jwt.sig"})
    assert result.returncode == 0, result.stderr
    assert (out / "token").read_text() == "eyJhbGciOi.jwt.sig"
    env = dict(line.split("=", 1) for line in (out / "build.env").read_text().splitlines() if "=" in line)
    assert env["AWS_ROLE_ARN"] == role and env["AWS_ROLE_SESSION_NAME"] == "gitlab-42-9001"
    assert "AWS_ACCESS_KEY_ID" not in env and "AWS_SECRET_ACCESS_KEY" not in env


def test_oidc_without_role_fails_clearly(tmp_path: Path) -> None:
    result, _ = run_template(tmp_path, credentials="oidc")
    assert result.returncode == 1
    assert "AWS_ROLE_ARN is not set: the stack must use credentials.mode oidc" in result.stderr


def test_unknown_application_fails_clearly(tmp_path: Path) -> None:
    result, out = run_template(tmp_path, app="billing")
    assert result.returncode == 1
    assert "ECR_REPOSITORY_BILLING is not set: is 'billing' in the stack's registry.applications?" in result.stderr
    assert not (out / "build.args").exists()


def test_missing_environment_variables_fail_clearly(tmp_path: Path) -> None:
    result, _ = run_template(tmp_path, env={"BUILDKIT_CACHE_REPOSITORY": ""})
    assert result.returncode == 1
    assert "CI/CD variable BUILDKIT_CACHE_REPOSITORY is not set for environment 'production'" in result.stderr


@pytest.mark.parametrize(
    ("inputs", "env", "message"),
    [
        ({}, {"FAKE_SHA": "0" * 64}, "does not match the published " + "0" * 64),
        ({"ecr_login_sha256": "f" * 64}, {}, "is not the pinned " + "f" * 64),
    ],
)
def test_helper_checksum_is_enforced_before_use(tmp_path: Path, inputs: dict, env: dict, message: str) -> None:
    result, out = run_template(tmp_path, env=env, **inputs)
    assert result.returncode == 1
    assert message in result.stderr
    assert not (out / "build.args").exists()


@pytest.mark.parametrize(
    ("error", "hint"),
    [
        ("[rootlesskit:parent] error: failed to setup UID/GID map: newuidmap: Could not set caps", "newuidmap could not set caps"),
        ("[rootlesskit:child ] error: failed to share mount point: /: permission denied", "AppArmor blocks rootlesskit"),
        ("failed to create user namespace: operation not permitted", "does not allow unprivileged user namespaces"),
        ("error: failed to solve: failed to push: 403 Forbidden", "ECR refused the credentials"),
    ],
)
def test_known_rootless_failures_get_a_hint(tmp_path: Path, error: str, hint: str) -> None:
    result, _ = run_template(tmp_path, env={"FAKE_BUILD_ERROR": error})
    assert result.returncode == 7
    assert "BUILD FAILED (exit 7)" in result.stderr
    assert hint in result.stderr
    assert error in result.stdout  # the build log itself is shown before the hints
