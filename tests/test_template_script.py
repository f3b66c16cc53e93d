"""The build template's shell, executed by /bin/sh with stub `wget`, the ECR helper and `buildctl-daemonless.sh`.

This checks the script's behaviour (arguments, tags, cache refs, credentials, checksum, existing-tag
skips, error hints, log streaming); the real rootless image, S3 download and ECR push need a runner
(README "Manual checks").
"""

from __future__ import annotations

import base64
import hashlib
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest
from test_ci_files import included_jobs

# The ECR helper stand-in: `get` prints registry credentials as the real helper does.
HELPER = b"""#!/bin/sh
cat > /dev/null
printf '{"ServerURL":"%s","Username":"AWS","Secret":"ZWNyLXRva2Vu"}' "$ECR_REGISTRY"
"""
REGISTRY = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
WGET = """#!/bin/sh
# wget -q -O <file> <url>, or wget --spider -S ... <url> (a HEAD of a manifest)
for last in "$@"; do :; done
url="$last"
echo "$url" >> "$STUB_DIR/wget.log"
case "$1" in
  --spider)
    printf '%s\\n' "$@" >> "$STUB_DIR/spider.args"
    tag="${url##*/manifests/}"
    if [ -n "${STUB_REGISTRY_STATUS:-}" ]; then echo "  HTTP/1.1 $STUB_REGISTRY_STATUS Oops" >&2; exit 1; fi
    for existing in ${STUB_EXISTING_TAGS:-}; do
      if [ "$existing" = "$tag" ]; then echo "  HTTP/1.1 200 OK" >&2; exit 0; fi
    done
    echo "wget: server returned error: HTTP/1.1 404 Not Found" >&2; exit 1 ;;
esac
out="$3"
case "$url" in
  *.sha256) printf '%s  docker-credential-ecr-login\\n' "${FAKE_SHA:-$REAL_SHA}" ;;
  *) cat "$STUB_DIR/helper.bin" > "$out" ;;
esac
"""
BUILDCTL = """#!/bin/sh
for arg in "$@"; do echo "$arg"; done > "$STUB_DIR/build.args"
cp "$DOCKER_CONFIG/config.json" "$STUB_DIR/config.json"
env > "$STUB_DIR/build.env"
echo "#1 [internal] load build definition from Dockerfile"
if [ -f "$STUB_DIR/wait-for" ]; then
  gate=$(cat "$STUB_DIR/wait-for"); i=0; while [ ! -e "$gate" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
fi
if [ -f "$STUB_DIR/build-error" ]; then cat "$STUB_DIR/build-error" >&2; exit 7; fi
echo "#12 exporting to image done"
"""
# The warm daemon's client: `debug workers` probes (its answer told by files), `build` records like the other stub.
WARM_BUILDCTL = """#!/bin/sh
if [ "$9" = "debug" ]; then
  for arg in "$@"; do echo "$arg"; done > "$STUB_DIR/probe.args"
  if [ -f "$STUB_DIR/probe-error" ]; then cat "$STUB_DIR/probe-error" >&2; exit 1; fi
  echo "ID  PLATFORMS"; exit 0
fi
for arg in "$@"; do echo "$arg"; done > "$STUB_DIR/warm.args"
ls -l "$6" "$8" > "$STUB_DIR/warm.files"
cp "$DOCKER_CONFIG/config.json" "$STUB_DIR/config.json"
env > "$STUB_DIR/build.env"
if [ -f "$STUB_DIR/build-error" ]; then cat "$STUB_DIR/build-error" >&2; exit 7; fi
echo "#12 exporting to image done"
"""
SHA = "0123456789abcdef0123456789abcdef01234567"
TIMESTAMP = "2026-11-20T10:15:30+01:00"


def template_env(
    tmp_path: Path, *, app: str = "web-api", credentials: str = "access-key", env: dict[str, str] | None = None, **inputs: object
) -> tuple[list[str], dict[str, str]]:
    stubs = tmp_path / "bin"
    stubs.mkdir()
    for name, body in (("wget", WGET), ("buildctl-daemonless.sh", BUILDCTL), ("buildctl", WARM_BUILDCTL)):
        # The build runs under `env -i`: its stub finds the test folder by a path written into it.
        (stubs / name).write_text(body.replace('"$STUB_DIR', f'"{tmp_path}') if name != "wget" else body)
        (stubs / name).chmod(0o755)
    (tmp_path / "helper.bin").write_bytes(HELPER)
    env = dict(env or {})
    # The build stub runs under `env -i`: what it should do is told through files, not the environment.
    if "FAKE_BUILD_ERROR" in env:
        (tmp_path / "build-error").write_text(env.pop("FAKE_BUILD_ERROR"))
    if "FAKE_PROBE_ERROR" in env:
        (tmp_path / "probe-error").write_text(env.pop("FAKE_PROBE_ERROR"))
    if "STUB_WAIT_FOR" in env:
        (tmp_path / "wait-for").write_text(env.pop("STUB_WAIT_FOR"))
    job = included_jobs(app=app, credentials=credentials, **{"environment": "dev", **inputs})[f"build-image-{app}"]
    variables = {k: str(v) for k, v in job["variables"].items()}
    environment = {
        "PATH": f"{stubs}:/usr/bin:/bin",
        "HOME": str(tmp_path / "home"),
        "STUB_DIR": str(tmp_path),
        "REAL_SHA": hashlib.sha256(HELPER).hexdigest(),
        "CI_COMMIT_SHA": SHA,
        "CI_COMMIT_SHORT_SHA": "01234567",
        "CI_COMMIT_REF_SLUG": "feature-x",
        "CI_COMMIT_TIMESTAMP": TIMESTAMP,
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
    return ["sh", "-c", "\n".join(job["script"])], environment


def run_template(
    tmp_path: Path, *, app: str = "web-api", credentials: str = "access-key", env: dict[str, str] | None = None, **inputs: object
) -> tuple[subprocess.CompletedProcess[str], Path]:
    command, environment = template_env(tmp_path, app=app, credentials=credentials, env=env, **inputs)
    result = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    return result, tmp_path


def build_args(out: Path) -> list[str]:
    return (out / "build.args").read_text().splitlines()


def test_access_key_build_arguments_tags_and_cache(tmp_path: Path) -> None:
    result, out = run_template(tmp_path, build_args="VERSION=1.2 COMMIT=abc", target="runtime", dockerfile="docker/Dockerfile")
    assert result.returncode == 0, result.stderr
    repo, cache = f"{REGISTRY}/acme/web-api", f"{REGISTRY}/acme/buildkit-cache"
    epoch = str(int(datetime.fromisoformat(TIMESTAMP).timestamp()))
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
        "--output",
        f'type=image,"name={repo}:{SHA},{repo}:feature-x-01234567",push=true,rewrite-timestamp=true',
        "--export-cache",
        f"type=registry,ref={cache}:cache-web-api.feature-x,mode=max,image-manifest=true,oci-mediatypes=true",
        "--import-cache",
        f"type=registry,ref={cache}:cache-web-api.feature-x",
        "--import-cache",
        f"type=registry,ref={cache}:cache-web-api.main",
        "--opt",
        "target=runtime",
        "--opt",
        f"build-arg:SOURCE_DATE_EPOCH={epoch}",
        "--opt",
        "build-arg:VERSION=1.2",
        "--opt",
        "build-arg:COMMIT=abc",
    ]
    token = base64.b64encode(b"AWS:ZWNyLXRva2Vu").decode()
    assert (out / "config.json").read_text().strip() == f'{{"auths": {{"{REGISTRY}": {{"auth": "{token}"}}}}}}'
    helper = "https://amazon-ecr-credential-helper-releases.s3.us-east-2.amazonaws.com/0.12.0/linux-amd64/docker-credential-ecr-login"
    assert (out / "wget.log").read_text().splitlines() == [
        helper,
        f"{helper}.sha256",
        f"https://{REGISTRY}/v2/acme/web-api/manifests/{SHA}",
        f"https://{REGISTRY}/v2/acme/web-api/manifests/feature-x-01234567",
    ]
    env = (out / "build.env").read_text()
    assert "BUILDKITD_FLAGS=--oci-worker-no-process-sandbox" in env
    assert "AKIAEXAMPLE" not in env and "secret/example" not in env
    assert "secret/example" not in result.stdout + result.stderr
    assert "ZWNyLXRva2Vu" not in result.stdout + result.stderr  # the registry token is sent, never printed


def test_git_tag_pipelines_push_the_git_tag_name(tmp_path: Path) -> None:
    """Regression: v1.2.3 was pushed as its slug v1-2-3."""
    result, out = run_template(tmp_path, env={"CI_COMMIT_TAG": "v1.2.3", "CI_COMMIT_REF_SLUG": "v1-2-3"})
    assert result.returncode == 0, result.stderr
    assert any(arg.endswith(f'{REGISTRY}/acme/web-api:v1.2.3",push=true,rewrite-timestamp=true') for arg in build_args(out))


@pytest.mark.parametrize("tag", ["release/2026.11", "v1.2.3+build.4", "-v1", "x" * 129])
def test_git_tags_that_are_not_image_tags_fall_back_to_the_slug(tmp_path: Path, tag: str) -> None:
    result, out = run_template(tmp_path, env={"CI_COMMIT_TAG": tag, "CI_COMMIT_REF_SLUG": "slugged"})
    assert result.returncode == 0, result.stderr
    assert "git tag is not a valid image tag; pushing it as 'slugged'" in result.stdout
    assert any(f'{REGISTRY}/acme/web-api:slugged"' in arg for arg in build_args(out))


def test_mutable_repositories_can_push_the_moving_ref_tag(tmp_path: Path) -> None:
    result, out = run_template(tmp_path, immutable_tags="false")
    assert result.returncode == 0, result.stderr
    assert any(arg.endswith(f'{REGISTRY}/acme/web-api:feature-x",push=true,rewrite-timestamp=true') for arg in build_args(out))
    assert not (out / "spider.args").exists()  # mutable tags may move: nothing is checked first


def test_oidc_exchanges_the_id_token_and_removes_it_before_the_build(tmp_path: Path) -> None:
    role = "arn:aws:iam::123456789012:role/gitlab-buildkit-push-prod-acme-web"
    helper = b"""#!/bin/sh
cat > /dev/null
env > "$STUB_DIR/helper.env"
cp "$AWS_WEB_IDENTITY_TOKEN_FILE" "$STUB_DIR/token"
printf '{"Username":"AWS","Secret":"ZWNyLXRva2Vu"}'
"""
    command, environment = template_env(tmp_path, credentials="oidc", env={"AWS_ROLE_ARN": role, "AWS_ID_TOKEN": "eyJhbGciOi.jwt.sig"})
    (tmp_path / "helper.bin").write_bytes(helper)
    environment["REAL_SHA"] = hashlib.sha256(helper).hexdigest()
    result = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # the ECR helper, and only it, exchanged the ID token for the role
    assert (tmp_path / "token").read_text() == "eyJhbGciOi.jwt.sig"
    helper_env = dict(line.split("=", 1) for line in (tmp_path / "helper.env").read_text().splitlines() if "=" in line)
    assert helper_env["AWS_ROLE_ARN"] == role and helper_env["AWS_ROLE_SESSION_NAME"] == "gitlab-42-9001"
    assert "AWS_ACCESS_KEY_ID" not in helper_env and "AWS_SECRET_ACCESS_KEY" not in helper_env
    assert not Path(helper_env["AWS_WEB_IDENTITY_TOKEN_FILE"]).exists()  # removed before the build
    build_env = (tmp_path / "build.env").read_text()
    assert "eyJhbGciOi" not in build_env and role not in build_env and "AWS_" not in build_env


BUILD_ENV_ALLOWED = {"PATH", "HOME", "USER", "XDG_RUNTIME_DIR", "BUILDKITD_FLAGS", "DOCKER_CONFIG", "PWD", "SHLVL", "_", "OLDPWD"}


@pytest.mark.parametrize("credentials", ["access-key", "oidc"])
def test_the_daemon_and_buildctl_see_no_ci_variable(tmp_path: Path, credentials: str) -> None:
    """RUN steps share the daemon's PID namespace and can read the environment of the daemon and of
    buildctl: both start with `env -i` and get only the registry token's config file."""
    env = {"CI_JOB_TOKEN": "glcbt-jobtoken123456", "PREVIEW_NOTE_TOKEN": "glpat-leak12345678"}
    if credentials == "oidc":
        env |= {"AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/r", "AWS_ID_TOKEN": "eyJhbGciOi.jwt.sig"}
    result, out = run_template(tmp_path, credentials=credentials, env=env)
    assert result.returncode == 0, result.stderr
    names = {line.split("=", 1)[0] for line in (out / "build.env").read_text().splitlines() if "=" in line}
    assert names <= BUILD_ENV_ALLOWED, names - BUILD_ENV_ALLOWED
    config = (out / "config.json").read_text()
    assert "credHelpers" not in config and "AKIA" not in config


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
        (
            "[rootlesskit:parent] error: failed to start the child: fork/exec /proc/self/exe: operation not permitted",
            "seccomp profile blocks the user namespace rootlesskit creates (RuntimeDefault does): use jobSecurityMode 'confined'",
        ),
        # what a confined profile without one of its syscalls prints (components/build_seccomp.WHY)
        ("[rootlesskit:child ] error: failed to share mount point: /: operation not permitted", "re-run the node bootstrap"),
        (
            "runc run failed: unable to start container process: error during container init: pivot_root .: operation not permitted",
            "re-run the node bootstrap",
        ),
        (
            "runc run failed: unable to start container process: unable to join session keyring: operation not permitted",
            "re-run the node bootstrap",
        ),
        ("sethostname: operation not permitted", "re-run the node bootstrap"),
        ("error: failed to solve: failed to read dockerfile: operation not permitted", "re-run the node bootstrap"),
        ("runc run failed: can't get final child's PID from pipe: EOF", "re-run the node bootstrap"),
        ("error: failed to solve: failed to push: 403 Forbidden", "ECR refused the credentials"),
        (
            "failed to push: tag invalid: The image tag 'abc' already exists in the 'web' repository and cannot be overwritten "
            "because the repository is immutable.",
            "a tag already exists in an immutable repository (pushed meanwhile by another pipeline?): retry the job",
        ),
    ],
)
def test_known_rootless_failures_get_a_hint(tmp_path: Path, error: str, hint: str) -> None:
    result, _ = run_template(tmp_path, env={"FAKE_BUILD_ERROR": error})
    if "operation not permitted" in error:  # EPERM is seccomp, not AppArmor (which answers EACCES)
        assert "AppArmor blocks" not in result.stderr
    assert result.returncode == 7
    assert "BUILD FAILED (exit 7)" in result.stderr
    assert hint in result.stderr
    assert error in result.stdout  # the build log itself is shown before the hints


# --- Rebuilding a commit on IMMUTABLE repositories -----------------------------------------------


def test_existing_tags_are_skipped_and_only_missing_ones_pushed(tmp_path: Path) -> None:
    """Regression: a retry or a tag pipeline pushed <repo>:<sha> again, which ECR refuses on IMMUTABLE repositories."""
    result, out = run_template(tmp_path, env={"STUB_EXISTING_TAGS": SHA, "CI_COMMIT_TAG": "v2.0.0"})
    assert result.returncode == 0, result.stderr
    assert f"{REGISTRY}/acme/web-api:{SHA} exists already: not pushed again" in result.stdout
    output = next(arg for arg in build_args(out) if arg.startswith("type=image"))
    assert output == f'type=image,"name={REGISTRY}/acme/web-api:v2.0.0",push=true,rewrite-timestamp=true'
    spider = (out / "spider.args").read_text()
    assert "Authorization: Basic " + base64.b64encode(b"AWS:ZWNyLXRva2Vu").decode() in spider  # user:secret from the helper


def test_a_commit_whose_tags_all_exist_is_not_rebuilt(tmp_path: Path) -> None:
    result, out = run_template(tmp_path, env={"STUB_EXISTING_TAGS": f"{SHA} feature-x-01234567"})
    assert result.returncode == 0, result.stderr
    assert "Every tag of this commit exists already: nothing to build or push." in result.stdout
    assert not (out / "build.args").exists()


@pytest.mark.parametrize("status", ["401", "403", "500"])
def test_an_unanswered_existence_check_stops_the_job(tmp_path: Path, status: str) -> None:
    result, out = run_template(tmp_path, env={"STUB_REGISTRY_STATUS": status})
    assert result.returncode == 1
    assert f"cannot tell whether {REGISTRY}/acme/web-api:{SHA} exists (registry answered '{status}')" in result.stderr
    assert not (out / "build.args").exists()


@pytest.mark.parametrize(
    "timestamp",
    [
        "2026-11-20T10:15:30Z",
        "2026-11-20T10:15:30+01:00",
        "2024-02-29T23:59:59-08:00",
        "1999-12-31T00:00:00.123+0530",
        "2000-03-01T08:09:08Z",
    ],
)
def test_source_date_epoch_is_the_commit_time(tmp_path: Path, timestamp: str) -> None:
    result, out = run_template(tmp_path, env={"CI_COMMIT_TIMESTAMP": timestamp})
    assert result.returncode == 0, result.stderr
    expected = int(datetime.fromisoformat(timestamp.replace("+0530", "+05:30")).timestamp())
    assert f"build-arg:SOURCE_DATE_EPOCH={expected}" in build_args(out)


@pytest.mark.parametrize("timestamp", ["", "yesterday", "2026-11-20 10:15:30", "2026-11-20T10:15:30Z\nX"])
def test_without_a_commit_time_the_build_warns_and_goes_on(tmp_path: Path, timestamp: str) -> None:
    result, out = run_template(tmp_path, env={"CI_COMMIT_TIMESTAMP": timestamp})
    assert result.returncode == 0, result.stderr
    assert "the image is not reproducible" in result.stdout
    assert not [a for a in build_args(out) if "SOURCE_DATE_EPOCH" in a or "rewrite-timestamp" in a]


# --- Inputs --------------------------------------------------------------------------------------


def test_build_args_are_not_glob_expanded(tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("x")
    result, out = run_template(tmp_path, build_args="FILES=* ONE=?")
    assert result.returncode == 0, result.stderr
    assert [a for a in build_args(out) if a.startswith("build-arg:") and "SOURCE_DATE" not in a] == ["build-arg:FILES=*", "build-arg:ONE=?"]


@pytest.mark.parametrize("build_args", ["JUSTAVALUE", "=x", "1A=x", "A-B=x"])
def test_build_args_need_a_key(tmp_path: Path, build_args: str) -> None:
    result, out = run_template(tmp_path, build_args=build_args)
    assert result.returncode == 1
    assert "build_args: each entry must be KEY=VALUE" in result.stderr
    assert not (out / "build.args").exists()


@pytest.mark.parametrize("app", ["Web", "web\nx", "web;rm", "web--api", "-web", "web/"])
def test_app_is_validated_and_not_echoed(tmp_path: Path, app: str) -> None:
    command, environment = template_env(tmp_path, app="web-api")
    environment["APP"] = app
    result = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 1
    assert "input app is not an application name" in result.stderr
    assert app not in result.stderr or app == "Web"
    assert not (tmp_path / "build.args").exists()


def test_cache_tags_of_different_applications_and_refs_cannot_collide(tmp_path: Path) -> None:
    """Regression: 'web'@'api-main' and 'web-api'@'main' shared cache-web-api-main."""
    refs = []
    for app, ref in (("web", "api-main"), ("web-api", "main")):
        path = tmp_path / app
        path.mkdir()
        result, out = run_template(path, app=app, env={"CI_COMMIT_REF_SLUG": ref, "ECR_REPOSITORY_WEB": f"{REGISTRY}/acme/web"})
        assert result.returncode == 0, result.stderr
        refs.append(next(a for a in build_args(out) if a.startswith("type=registry,ref=") and "mode=max" in a))
    assert refs[0] != refs[1]
    assert ":cache-web.api-main," in refs[0] and ":cache-web-api.main," in refs[1]


def test_platform_defaults_to_the_runner_nodes_architecture(tmp_path: Path) -> None:
    """Regression: the default was linux/amd64 whatever the runner nodes were (emulated on arm64)."""
    (tmp_path / "native").mkdir()
    (tmp_path / "multi").mkdir()
    result, out = run_template(tmp_path / "native")
    assert result.returncode == 0, result.stderr
    assert not [a for a in build_args(out) if a.startswith("platform=")]  # BuildKit builds for its own platform
    result, out = run_template(tmp_path / "multi", platforms="linux/amd64,linux/arm64")
    assert result.returncode == 0, result.stderr
    assert "platform=linux/amd64,linux/arm64" in build_args(out)


def test_the_build_log_streams_while_the_build_runs(tmp_path: Path) -> None:
    """Regression: the log was buffered and printed after the build, so a timeout or cancel lost it."""
    gate = tmp_path / "continue"
    command, environment = template_env(tmp_path, env={"STUB_WAIT_FOR": str(gate), "FAKE_BUILD_ERROR": "boom"})
    process = subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        assert process.stdout is not None
        started = time.monotonic()
        line = process.stdout.readline()
        while "load build definition" not in line and time.monotonic() - started < 20:
            line = process.stdout.readline()
        assert "load build definition" in line  # seen while the build is still waiting at the gate
        assert process.poll() is None
        gate.write_text("go")
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 7  # the build's exit status survives the pipe through tee
    assert "boom" in stdout and "BUILD FAILED (exit 7)" in stderr


# --- builders.mode 'warm': the project's daemon, and the fallback --------------------------------------


def _warm_env() -> dict[str, str]:
    """Real certificates (the stack's generator): the job checks its client certificate with openssl."""
    from components.builder_certificates import issue

    certs = issue({"project": "acme-web-api", "serverNames": ["localhost"], "validityDays": 30, "renewBeforeDays": 7})
    return {
        "BUILDKIT_HOST": "tcp://buildkitd-acme-web-api.gitlab-runner-builders.svc:1234",
        "BUILDKIT_TLS_CA_B64": base64.b64encode(certs["caPem"].encode()).decode(),
        "BUILDKIT_TLS_CERT_B64": base64.b64encode(certs["clientCertPem"].encode()).decode(),
        "BUILDKIT_TLS_KEY_B64": base64.b64encode(certs["clientKeyPem"].encode()).decode(),
    }


WARM_ENV = _warm_env()


def test_warm_daemon_builds_with_the_projects_certificate_and_the_same_cache(tmp_path: Path) -> None:
    result, out = run_template(tmp_path, env=dict(WARM_ENV))
    assert result.returncode == 0, result.stderr
    assert not (out / "build.args").exists()  # no daemon of the job's own
    args = (out / "warm.args").read_text().splitlines()
    assert args[:9] == ["--addr", WARM_ENV["BUILDKIT_HOST"], "--tlscacert", args[3], "--tlscert", args[5], "--tlskey", args[7], "build"]
    assert args[3].endswith("/ca.pem") and args[5].endswith("/cert.pem") and args[7].endswith("/key.pem")
    cache = f"{REGISTRY}/acme/buildkit-cache"
    # the registry cache is still exported and imported: a daemon that lost its volume starts warm
    assert f"type=registry,ref={cache}:cache-web-api.feature-x,mode=max,image-manifest=true,oci-mediatypes=true" in args
    assert f"type=registry,ref={cache}:cache-web-api.feature-x" in args
    assert (out / "warm.files").read_text().count("-rw-------") == 2  # certificate and key: the job user's only
    build_env = (out / "build.env").read_text()
    assert "BUILDKIT_TLS" not in build_env and "AWS_" not in build_env
    assert "on the project's warm daemon" in result.stdout and "WARNING" not in result.stderr


@pytest.mark.parametrize(
    ("probe_error", "reason"),
    [
        ("error: x509: certificate signed by unknown authority", "it refused this project's client certificate"),
        ("remote error: tls: bad certificate", "it refused this project's client certificate"),
        ("error: x509: certificate has expired or is not yet valid", "its certificates are not valid now"),
        # what a Go server answers for an expired client certificate (TLS alert 45), as seen in make e2e
        (
            "rpc error: code = Unavailable desc = connection error: remote error: tls: expired certificate",
            "its certificates are not valid now",
        ),
        ("remote error: tls: unknown certificate authority", "it refused this project's client certificate"),
        # TLS 1.3: a daemon refusing the client certificate may close the connection before its alert is read
        (
            "error: failed to list workers: Unavailable: write tcp 127.0.0.1:41840->127.0.0.1:45123: write: broken pipe",
            "it refused this project's client certificate",
        ),
        ("dial tcp 10.0.0.9:1234: connect: connection refused", "it does not answer at tcp://buildkitd-acme-web-api"),
        ("lookup buildkitd-acme-web-api.gitlab-runner-builders.svc: no such host", "it does not answer"),
        ("something else entirely", "buildctl debug workers failed: something else entirely"),
    ],
)
def test_an_unusable_warm_daemon_falls_back_with_the_reason(tmp_path: Path, probe_error: str, reason: str) -> None:
    result, out = run_template(tmp_path, env={**WARM_ENV, "FAKE_PROBE_ERROR": probe_error})
    assert result.returncode == 0, result.stderr
    assert f"WARNING: the project's warm BuildKit daemon is unusable: {reason}" in result.stderr
    assert "building with a daemon of this job's own instead" in result.stderr
    assert (out / "build.args").exists() and not (out / "warm.args").exists()
    assert WARM_ENV["BUILDKIT_TLS_KEY_B64"] not in result.stdout + result.stderr


def test_missing_certificate_variables_fall_back_naming_them(tmp_path: Path) -> None:
    env = {**WARM_ENV, "BUILDKIT_TLS_KEY_B64": "", "BUILDKIT_TLS_CA_B64": "not base64 !"}
    result, out = run_template(tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "the client certificate variables are missing or not base64 (ca.pem key.pem)" in result.stderr
    assert not (out / "probe.args").exists()  # no connection attempt without the certificate


def test_a_full_warm_volume_names_the_setting(tmp_path: Path) -> None:
    result, _ = run_template(
        tmp_path,
        env={**WARM_ENV, "FAKE_BUILD_ERROR": "error: failed to copy: write /home/user/.local/share/buildkit/x: no space left on device"},
    )
    assert result.returncode == 7
    assert "the warm daemon's volume is full: raise builders.warm.storage" in result.stderr


def test_an_expired_client_certificate_is_named_before_any_connection(tmp_path: Path) -> None:
    import datetime

    from components.builder_certificates import issue

    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=40)
    expired = issue({"project": "acme-web-api", "serverNames": ["localhost"], "validityDays": 30, "renewBeforeDays": 7}, now=past)
    env = {**WARM_ENV, "BUILDKIT_TLS_CERT_B64": base64.b64encode(expired["clientCertPem"].encode()).decode()}
    result, out = run_template(tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "its client certificate (BUILDKIT_TLS_CERT_B64) has expired or cannot be read: run 'pulumi up'" in result.stderr
    assert not (out / "probe.args").exists()
