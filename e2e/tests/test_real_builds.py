"""Real builds: the template's own script with rootless BuildKit as an unprivileged user, against the
ECR stand-in (e2e/ecr.py, e2e/build_job.py say what is real and what is a stand-in).

One session per module: one registry, base images seeded once; every job starts with an empty HOME
(no local BuildKit state), as a CI pod does.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

import pytest

from e2e.build_job import BuildSession, HostError, JobResult, Pipeline, build_user, check_host, checkout, fixture_config

APPS = ["go-service", "deps-install", "many-layers", "credential-probe"]
SHA_A, SHA_B, SHA_C = "a" * 40, "b" * 40, "c" * 40
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_LAYER = re.compile(r"^application/vnd\.oci\.image\.layer\.v1\.tar(\+gzip|\+zstd)?$")
STEP = re.compile(r"^#(\d+) \[([^\]]+)\] (.*)$")
# A cached layer fetched or unpacked: "#11 sha256:<hex> 5.89MB / 5.89MB 0.0s done", "#11 extracting sha256:<hex> 0.1s done".
TRANSFER = re.compile(r"^#(\d+) (extracting )?sha256:[0-9a-f]{64}( [0-9.]+[kMG]?B / [0-9.]+[kMG]?B)?( [0-9.]+s)?( done)?$")


def build(session: BuildSession, app: str, source: Path, pipeline: Pipeline, **inputs: str) -> JobResult:
    assert session.ecr is not None
    return session.run(app, source, pipeline, inputs={"build_args": f"BASE={session.ecr.host}", **inputs})


def steps(result: JobResult) -> dict[str, dict[str, object]]:
    """Dockerfile steps of a plain BuildKit log: title -> {cached, ran (lines of RUN output), transfers}."""
    by_id: dict[str, dict[str, object]] = {}
    titles: dict[str, str] = {}
    for line in result.output.splitlines():
        match = STEP.match(line)
        if match and not match[2].startswith(("internal", "auth")) and not match[3].startswith("FROM "):
            titles[match[1]] = f"[{match[2]}] {match[3]}"
            by_id.setdefault(match[1], {"cached": False, "ran": 0, "transfers": 0})
            continue
        number = line.split(" ", 1)[0].lstrip("#")
        if number not in by_id:
            continue
        if line == f"#{number} CACHED":
            by_id[number]["cached"] = True
        elif TRANSFER.match(line):
            by_id[number]["transfers"] = int(str(by_id[number]["transfers"])) + 1
        elif re.match(rf"^#{number} \d+\.\d+ ", line):
            by_id[number]["ran"] = int(str(by_id[number]["ran"])) + 1
    return {titles[n]: v for n, v in by_id.items()}


def is_cache_hit(title: str, state: dict[str, object]) -> bool:
    """A step served from the cache. BuildKit's plain printer shows `CACHED`, except when the cached
    layer has to be fetched (the next step changed, or the image export needs it): then it prints the
    layer's transfer and `DONE`, and for a cross-stage `COPY --from` sometimes a bare `DONE`, although
    the solver reports the step cached (`--progress=rawjson` says `"cached": true`; seen while building
    this harness). A step that executed prints its output (`#N 0.123 ...`): RUN steps here all print."""
    if state["cached"]:
        return True
    return not state["ran"] and (bool(state["transfers"]) or title.split("] ", 1)[1].startswith("COPY --from="))


def assert_all_cached(result: JobResult) -> None:
    found = steps(result)
    assert found, result.output
    for title, state in found.items():
        assert is_cache_hit(title, state), f"{title} was executed:\n{result.output}"


@pytest.fixture(scope="module")
def main_build(session: BuildSession, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, JobResult]:
    """go-service on the default branch, commit A: the first build of the module's registry."""
    source = checkout("go-service", tmp_path_factory.mktemp("go-service") / "src")
    result = build(session, "go-service", source, Pipeline(ref_slug="main", sha=SHA_A))
    assert result.returncode == 0, result.output
    return source, result


def test_a_build_pushes_exactly_the_promised_tags(session: BuildSession, main_build: tuple[Path, JobResult]) -> None:
    assert session.ecr is not None
    # docs/template-adoption.md "Tags": <commit sha> and <ref slug>-<short sha> (IMMUTABLE repository).
    assert session.ecr.tags(session.repository("go-service")) == {SHA_A, f"main-{SHA_A[:8]}"}
    assert session.ecr.digest(session.repository("go-service"), SHA_A) == session.ecr.digest(
        session.repository("go-service"), f"main-{SHA_A[:8]}"
    )
    assert session.ecr.tags(session.cache_repository("go-service")) == {"cache-go-service.main"}
    assert "BUILD FAILED" not in main_build[1].output


def test_the_cache_is_an_oci_image_manifest_with_oci_layers(session: BuildSession, main_build: tuple[Path, JobResult]) -> None:
    assert session.ecr is not None
    manifest = session.ecr.manifest(session.cache_repository("go-service"), "cache-go-service.main")
    # image-manifest=true: an image manifest (not an index) that ECR accepts; oci-mediatypes=true: OCI types.
    assert manifest["mediaType"] == OCI_MANIFEST
    assert manifest["config"]["mediaType"] == "application/vnd.buildkit.cacheconfig.v0"  # type: ignore[index]
    layers = manifest["layers"]
    assert isinstance(layers, list) and len(layers) >= 4  # every stage's layers (mode=max)
    assert all(OCI_LAYER.match(layer["mediaType"]) for layer in layers), layers
    # Valid: the config and every layer it names are in the repository with that digest and size.
    # (`crane validate` does not apply: a cache config has no rootfs diff_ids, it is not a runnable image.)
    repository = f"{session.ecr.backend}/{session.cache_repository('go-service')}"
    for descriptor in [manifest["config"], *layers]:
        blob = subprocess.run(
            [str(session.ecr.crane_binary), "blob", f"{repository}@{descriptor['digest']}", "--insecure"],
            capture_output=True,
            timeout=120,
            check=True,
        ).stdout
        assert f"sha256:{hashlib.sha256(blob).hexdigest()}" == descriptor["digest"] and len(blob) == descriptor["size"]


def test_a_second_build_of_the_same_tree_is_all_cache_hits(session: BuildSession, main_build: tuple[Path, JobResult]) -> None:
    source, first = main_build
    # A new commit with the same tree (a merge, a retry on a mutable repository): the tags are new.
    result = build(session, "go-service", source, Pipeline(ref_slug="main", sha=SHA_B, job_id=2))
    assert result.returncode == 0, result.output
    assert not any(state["cached"] for state in steps(first).values()), "the first build of an empty registry had cache hits"
    assert_all_cached(result)
    assert "importing cache manifest from" in result.output


def test_an_identical_image_under_an_existing_tag_is_not_pushed_again(session: BuildSession, main_build: tuple[Path, JobResult]) -> None:
    """Found by these tests: BuildKit (containerd's pusher) asks HEAD /manifests/<tag> before a PUT and
    skips a manifest the registry already has under that tag, so a reproducible rebuild of a commit does
    not meet ECR's ImageTagAlreadyExistsException even without the template's existence check.
    Ref: https://github.com/containerd/containerd/blob/main/core/remotes/docker/pusher.go (the existence check before a push)"""
    assert session.ecr is not None
    source, _ = main_build
    session.ecr.ledger.reset()
    result = build(session, "go-service", source, Pipeline(ref_slug="main", sha=SHA_A, job_id=3), immutable_tags="false")
    assert result.returncode == 0, result.output
    assert_all_cached(result)
    puts = [(put.reference, put.status) for put in session.ecr.ledger.manifest_puts if put.repository == session.repository("go-service")]
    assert SHA_A not in [reference for reference, _ in puts], puts
    assert ("main", 201) in puts


def test_a_different_image_under_an_existing_immutable_tag_fails_with_its_hint(
    session: BuildSession, tmp_path: Path, main_build: tuple[Path, JobResult]
) -> None:
    # immutable_tags "false" on an IMMUTABLE repository (a misconfiguration) and a changed tree under
    # the same commit SHA: the job pushes the existing SHA tag with another digest, which ECR refuses.
    source = checkout("go-service", tmp_path / "src", changes=1)
    result = build(session, "go-service", source, Pipeline(ref_slug="main", sha=SHA_A, job_id=13), immutable_tags="false")
    assert result.returncode != 0
    assert "BUILD FAILED" in result.output
    assert "a tag already exists in an immutable repository" in result.output, result.output


def test_a_new_branch_starts_from_the_default_branch_cache(
    session: BuildSession, tmp_path: Path, main_build: tuple[Path, JobResult]
) -> None:
    assert session.ecr is not None
    source = checkout("go-service", tmp_path / "src")
    result = build(session, "go-service", source, Pipeline(ref_slug="feature-login", sha=SHA_C, job_id=4))
    assert result.returncode == 0, result.output
    # Its own cache ref does not exist yet; the default branch's does, and serves every step.
    assert "importing cache manifest from" in result.output
    assert_all_cached(result)
    assert "cache-go-service.feature-login" in session.ecr.tags(session.cache_repository("go-service"))


def test_one_changed_source_file_reuses_the_dependency_layer(session: BuildSession, tmp_path: Path) -> None:
    source = checkout("deps-install", tmp_path / "v1")
    first = build(session, "deps-install", source, Pipeline(ref_slug="main", sha="d" * 40, job_id=5))
    assert first.returncode == 0, first.output
    changed = checkout("deps-install", tmp_path / "v2", changes=1)
    result = build(session, "deps-install", changed, Pipeline(ref_slug="main", sha="e" * 40, job_id=6))
    assert result.returncode == 0, result.output
    found = steps(result)
    install = next(t for t in found if "install-deps.sh" in t and " RUN " in f" {t}")
    own_build = next(t for t in found if "src/build.sh" in t)
    assert is_cache_hit(install, found[install]), result.output
    assert not found[own_build]["cached"] and found[own_build]["ran"], result.output


def test_rebuilding_a_pushed_commit_neither_fails_nor_moves_a_tag(session: BuildSession, main_build: tuple[Path, JobResult]) -> None:
    assert session.ecr is not None
    source, _ = main_build
    repository = session.repository("go-service")
    before = {tag: session.ecr.digest(repository, tag) for tag in session.ecr.tags(repository)}
    retry = build(session, "go-service", source, Pipeline(ref_slug="main", sha=SHA_A, job_id=7))
    assert retry.returncode == 0, retry.output
    assert "Every tag of this commit exists already: nothing to build or push." in retry.output
    # A tag pipeline on the commit main built: the SHA tag is skipped, the git tag is added.
    release = build(session, "go-service", source, Pipeline(ref_slug="v1-4-0", sha=SHA_A, tag="v1.4.0", job_id=8))
    assert release.returncode == 0, release.output
    assert f"{repository}:{SHA_A} exists already" in release.output
    after = {tag: session.ecr.digest(repository, tag) for tag in session.ecr.tags(repository)}
    assert {tag: after[tag] for tag in before} == before
    # Reproducible (SOURCE_DATE_EPOCH, rewrite-timestamp): the release tag is the image main pushed.
    assert after["v1.4.0"] == before[SHA_A]


def test_the_template_runs_on_the_images_busybox_tools(session: BuildSession, main_build: tuple[Path, JobResult]) -> None:
    """The rootless image runs the script with BusyBox 1.37's sh, wget, sed... and nothing else (e2e/busybox.py):
    a new commit is built and pushed (the tag-existence check reads busybox wget's 404), then its retry
    is skipped (200), with no tool or flag the image lacks."""
    assert session.ecr is not None
    source, _ = main_build
    sha = "d" * 40  # a commit no other test builds
    inputs = {"build_args": f"BASE={session.ecr.host}"}
    first = session.run("go-service", source, Pipeline(ref_slug="main", sha=sha, job_id=21), inputs=inputs, busybox=True)
    assert first.returncode == 0, first.output
    assert sha in session.ecr.tags(session.repository("go-service")), first.output
    retry = session.run("go-service", source, Pipeline(ref_slug="main", sha=sha, job_id=22), inputs=inputs, busybox=True)
    assert retry.returncode == 0, retry.output
    assert "Every tag of this commit exists already: nothing to build or push." in retry.output
    for output in (first.output, retry.output):
        assert not re.search(r"not found|unrecognized option|invalid option|applet not found|Segmentation", output), output


def test_the_stand_in_refuses_to_overwrite_an_immutable_tag(session: BuildSession, main_build: tuple[Path, JobResult]) -> None:
    """The immutability model itself (a plain registry would accept the push)."""
    assert session.ecr is not None
    repository = session.repository("go-service")
    identity = session.identities["acme/go-service"]
    manifest = session.ecr.crane("manifest", f"{session.ecr.backend}/{repository}:{SHA_A}")
    result = subprocess.run(
        [
            "curl", "-sS", "--cacert", str(session.ecr.ca), "-u", f"AWS:{identity.token}", "-X", "PUT",
            "-H", "Content-Type: application/vnd.oci.image.manifest.v1+json", "--data-binary", manifest,
            f"https://{session.ecr.host}/v2/{repository}/manifests/{SHA_A}",
        ],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert "TAG_INVALID" in result.stdout and "cannot be overwritten because the repository is immutable" in result.stdout


def test_a_project_cannot_push_into_another_projects_repositories(session: BuildSession, tmp_path: Path) -> None:
    """ECR_REPOSITORY_MANY_LAYERS pointed at go-service's repository: the push identity of acme/many-layers is refused."""
    assert session.ecr is not None
    source = checkout("many-layers", tmp_path / "src")
    foreign = f"{session.ecr.host}/{session.repository('go-service')}"
    result = build(session, "many-layers", source, Pipeline(ref_slug="main", sha="f" * 40, job_id=9))
    assert result.returncode == 0, result.output
    hijack = session.run(
        "many-layers",
        source,
        Pipeline(ref_slug="main", sha="9" * 40, job_id=10),
        inputs={"build_args": f"BASE={session.ecr.host}"},
        override={"ECR_REPOSITORY_MANY_LAYERS": foreign},
    )
    assert hijack.returncode != 0
    assert "ECR refused the credentials" in hijack.output
    assert "9" * 40 not in session.ecr.tags(session.repository("go-service"))


def test_a_dockerfile_error_fails_the_job_with_the_step_and_no_stray_daemon(session: BuildSession, tmp_path: Path) -> None:
    source = checkout("many-layers", tmp_path / "src")
    dockerfile = source / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text().replace("COPY config.json", "RUN exit 3\nCOPY config.json"))
    result = build(session, "many-layers", source, Pipeline(ref_slug="broken", sha="0" * 40, job_id=11))
    assert result.returncode != 0
    assert "BUILD FAILED" in result.output and "RUN exit 3" in result.output
    assert "did not complete successfully: exit code: 3" in result.output
    # buildctl-daemonless.sh's EXIT trap stopped the daemon: nothing of the job outlived its script.
    assert result.leftover == [], result.leftover


def test_a_registry_that_is_down_stops_the_job_before_building(session: BuildSession, tmp_path: Path) -> None:
    source = checkout("many-layers", tmp_path / "src")
    result = session.run(
        "many-layers",
        source,
        Pipeline(ref_slug="main", sha="8" * 40, job_id=12),
        override={"ECR_REGISTRY": "127.0.0.1:9", "ECR_REPOSITORY_MANY_LAYERS": "127.0.0.1:9/acme/prod/many-layers"},
    )
    assert result.returncode != 0
    assert "cannot tell whether 127.0.0.1:9/acme/prod/many-layers:" in result.output
    assert "Building " not in result.output


def test_host_checks_name_what_is_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    check_host()  # this machine is prepared (`make build-host`)
    user = build_user()
    real = Path.read_text

    def no_ranges(path: Path, *args: object, **kwargs: object) -> str:
        if str(path) in ("/etc/subuid", "/etc/subgid"):
            return ""
        if str(path) == "/proc/sys/user/max_user_namespaces":
            return "0\n"
        return real(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "read_text", no_ranges)
    with pytest.raises(HostError) as error:
        check_host()
    message = str(error.value)
    assert f"/etc/subuid has no range for {user.name}" in message
    assert "user namespaces are disabled" in message
    assert "make build-host" in message
    # A session that cannot start leaves nothing behind: no daemon, no folder.
    failing = BuildSession(fixture_config(["many-layers"]))
    with pytest.raises(HostError):
        failing.start()
    assert not failing.workdir.exists()


@pytest.mark.parametrize("credentials", ["access-key", "oidc"])
def test_a_run_step_finds_no_aws_credential(session: BuildSession, tmp_path: Path, credentials: str) -> None:
    """A hostile RUN step (tests/fixtures/apps/credential-probe) searches every process it can see
    (environment, command line, open files) and the job's files (through other processes' roots) for
    the AWS credentials: the access keys, or the GitLab ID token and its file.

    What protects them, measured here: RUN steps see every process of the job (no PID sandbox) and
    read any command line, but reading another process's environment, open files or root is refused
    (EPERM) across the user namespace boundary; the template adds the token exchange, `env -i` and the
    removal of the ID token file. A secret on buildctl's command line (a build argument) is found."""
    assert session.ecr is not None
    source = checkout("credential-probe", tmp_path / "src")
    digit = "7" if credentials == "access-key" else "6"
    # Own ref and default branch: no cache from the other mode, so the probe runs.
    ref = f"probe-{credentials}"
    result = build(
        session, "credential-probe", source, Pipeline(ref_slug=ref, default_branch=ref, sha=digit * 40, job_id=14), credentials=credentials
    )
    assert result.returncode == 0, result.output
    assert "probe: done" in result.output and "processes visible" in result.output
    identity = session.identities["acme/credential-probe"]
    for secret in (identity.secret_access_key, identity.id_token, identity.access_key_id):
        assert secret not in result.output
    assert [line for line in result.output.splitlines() if "FOUND" in line] == []
