"""The stack under the real Pulumi engine: `pulumi up/preview/refresh/destroy` of the shipped stacks.

Real: the Pulumi CLI v3.274.0 and its Python language host, the Kubernetes provider 4.25.0, the policy
pack run by the CLI, kube-apiserver with PSA/LimitRanger/ResourceQuota, the controllers, kube-scheduler
and kwok nodes, Helm fetching the pinned chart over HTTPS. **Stand-ins**: the aws provider over moto,
the gitlab provider over a GitLab API stand-in (e2e/standins/). One platform for the module; the
tests run in file order (dev, then prod in the same AWS account, then destroys and the confined stack).
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from e2e.cluster import ApiError
from e2e.job_pod import job_pod
from e2e.platform import LocalPlatform, PlatformError, namespaced, stack_file_config
from e2e.tools import ROOT

TRACEBACK = "Traceback (most recent call last)"


@pytest.fixture(scope="module")
def project(platform: LocalPlatform) -> Path:
    return platform.project()


def resources_of(state: dict[str, Any], type_token: str) -> list[dict[str, Any]]:
    return [r for r in state["deployment"].get("resources") or [] if r["type"] == type_token]


def revealed_value(value: Any) -> Any:
    """A secret as `stack export --show-secrets` writes it: {<sig>: <secret>, "plaintext": "<JSON>"}."""
    return json.loads(value["plaintext"]) if isinstance(value, dict) and "plaintext" in value else value


def set_stack_config(project: Path, stack: str, section: str, **values: Any) -> None:
    path = project / f"Pulumi.{stack}.yaml"
    document = yaml.safe_load(path.read_text())
    document["config"].setdefault(f"gitlab-buildkit-runner:{section}", {}).update(values)
    path.write_text(yaml.safe_dump(document, sort_keys=False))


def gitlab_get(platform: LocalPlatform, path: str) -> Any:
    request = urllib.request.Request(f"{platform.gitlab_api}/api/v4/{path}", headers={"PRIVATE-TOKEN": platform.gitlab_token})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read().decode())


def aws(platform: LocalPlatform, service: str) -> Any:
    return boto3.client(
        service, endpoint_url=platform.aws_endpoint, region_name="eu-west-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )


def api(platform: LocalPlatform, path: str) -> dict[str, Any]:
    assert platform.cluster is not None
    return platform.cluster.request("GET", path)


@pytest.fixture(scope="module")
def dev(platform: LocalPlatform, project: Path) -> dict[str, Any]:
    platform.new_stack("dev", namespaced(stack_file_config("dev"), "dev"), project)
    result = platform.pulumi(*platform.up_args(project), project=project, stack="dev", timeout=1800)
    return {"up": result.stdout + result.stderr, "outputs": platform.outputs(project, "dev")}


@pytest.fixture(scope="module")
def prod(platform: LocalPlatform, project: Path, dev: dict[str, Any]) -> dict[str, Any]:
    """Prod in the same AWS account as dev (after it): it must find dev's OIDC provider, not create one."""
    platform.new_stack("prod", namespaced(stack_file_config("prod"), "prod"), project)
    result = platform.pulumi(*platform.up_args(project), project=project, stack="prod", timeout=1800)
    return {"up": result.stdout + result.stderr, "outputs": platform.outputs(project, "prod")}


# --- a: a fresh stack comes up with the pack, as intended, admitted by PSA ----------------------------
def test_dev_comes_up_under_the_pack_with_no_mandatory_violation(dev: dict[str, Any]) -> None:
    assert "Policies:" in dev["up"] or "gitlab-buildkit-runner@v1.0.0" in dev["up"], dev["up"][-3000:]
    assert "mandatory" not in dev["up"].lower() or "0 mandatory" in dev["up"].lower()
    assert dev["outputs"]["releaseStatus"] == "deployed"
    assert dev["outputs"]["managerNamespace"] == "dev-runner"


def test_dev_objects_are_in_the_apiserver_as_intended(platform: LocalPlatform, dev: dict[str, Any]) -> None:
    manager = api(platform, "/api/v1/namespaces/dev-runner")["metadata"]["labels"]
    jobs = api(platform, "/api/v1/namespaces/dev-runner-jobs")["metadata"]["labels"]
    assert manager["pod-security.kubernetes.io/enforce"] == "restricted"
    assert manager["pod-security.kubernetes.io/enforce-version"] == "v1.33"
    assert jobs["pod-security.kubernetes.io/enforce"] == "baseline"
    deployment = api(platform, "/apis/apps/v1/namespaces/dev-runner/deployments/gitlab-runner")
    assert deployment["status"].get("availableReplicas") == 1, deployment["status"]
    pods = api(platform, "/api/v1/namespaces/dev-runner/pods")["items"]
    running = [p for p in pods if p["status"].get("phase") == "Running"]
    assert len(running) == 1 and running[0]["spec"]["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    secret = api(platform, "/api/v1/namespaces/dev-runner/secrets/gitlab-runner-token")
    assert base64.b64decode(secret["data"]["runner-token"]).startswith(b"glrt-")
    assert secret["data"].get("runner-registration-token", "") == ""
    # The runner exists in GitLab with the stack's tags, under the id the stack exports.
    runner = gitlab_get(platform, f"runners/{dev['outputs']['runnerId']}")
    assert runner["tag_list"] == ["buildkit", "dev"] and runner["runner_type"] == "group_type"


# --- c: nothing to do after up; refresh finds no drift ------------------------------------------------
def test_dev_has_no_changes_after_up_and_refresh_is_clean(platform: LocalPlatform, project: Path, dev: dict[str, Any]) -> None:
    platform.pulumi("preview", "--expect-no-changes", project=project, stack="dev")
    platform.pulumi("refresh", "--yes", "--expect-no-changes", project=project, stack="dev")


# --- f: a real `preview --diff` rendered by cicd.preview_note ---------------------------------------
def test_a_real_preview_diff_renders_in_the_merge_request_note(platform: LocalPlatform, project: Path, dev: dict[str, Any]) -> None:
    original = (project / "Pulumi.dev.yaml").read_text()
    set_stack_config(project, "dev", "runner", concurrent=6)
    events = platform.workdir / "preview-events.jsonl"
    preview = [
        "preview",
        "--diff",
        "--event-log",
        str(events),
        "--policy-pack",
        str(project / "policies"),
        "--policy-pack-config",
        str(platform.policy_config()),
    ]
    # The preview job's own variables: the CLI has `--event-log` only with PULUMI_DEBUG_COMMANDS set.
    job = yaml.safe_load((ROOT / ".gitlab-ci.yml").read_text())["preview"]
    job_env = {k: str(v) for k, v in job["variables"].items() if k.startswith("PULUMI_")}
    try:
        refused = platform.pulumi(*preview, project=project, stack="dev", check=False, env={"PULUMI_DEBUG_COMMANDS": "false"})
        assert "unknown flag: --event-log" in refused.stderr
        result = platform.pulumi(*preview, project=project, stack="dev", env=job_env)
    finally:
        (project / "Pulumi.dev.yaml").write_text(original)
    assert "concurrent" in result.stdout
    note_file = platform.workdir / "note.md"
    subprocess.run(
        [sys.executable, "-m", "cicd.preview_note", "--stack", "dev", "--events", str(events), "--output", str(note_file)],
        cwd=ROOT,
        check=True,
    )
    note = note_file.read_text()
    assert "<!-- gitlab-buildkit-runner:preview:dev -->" in note
    assert "Policy violations: none." in note
    release_rows = [line for line in note.splitlines() if "`buildkit-release`" in line]
    assert release_rows and "update" in release_rows[0].lower() and "values" in release_rows[0], note
    assert "glrt-" not in note


# --- j: two stacks, one AWS account ------------------------------------------------------------------
def test_prod_in_the_same_account_finds_the_oidc_provider_instead_of_creating_it(platform: LocalPlatform, prod: dict[str, Any]) -> None:
    providers = aws(platform, "iam").list_open_id_connect_providers()["OpenIDConnectProviderList"]
    assert len(providers) == 1  # dev's, created once
    role = aws(platform, "iam").get_role(RoleName="gitlab-buildkit-preview-prod")["Role"]
    assert providers[0]["Arn"] in json.dumps(role["AssumeRolePolicyDocument"])
    assert prod["outputs"]["releaseStatus"] == "deployed"


@pytest.mark.parametrize(
    ("arn", "expected"),
    [
        # in the stack's account (moto's), but no such provider (dev's is arn:aws:..., this is another partition's)
        ("arn:aws-us-gov:iam::123456789012:oidc-provider/gitlab.com", "': no IAM OIDC provider for https://gitlab.com with that ARN"),
        # another account's: refused by name before the lookup (a role trusts only its own account's providers)
        (
            "arn:aws:iam::210987654321:oidc-provider/gitlab.com",
            "': is in account 210987654321, but this stack's AWS provider is in account 123456789012",
        ),
    ],
)
def test_a_configured_oidc_provider_arn_that_cannot_be_used_is_a_clear_error(
    platform: LocalPlatform, project: Path, dev: dict[str, Any], arn: str, expected: str
) -> None:
    config = namespaced(stack_file_config("prod"), "prodx")
    config["gitlab-buildkit-runner:credentials"] = {
        **config["gitlab-buildkit-runner:credentials"],
        "oidcProvider": "existing",
        "oidcProviderArn": arn,
    }
    platform.new_stack("prodx", config, project)
    try:
        result = platform.pulumi("up", "--yes", project=project, stack="prodx", check=False)
        output = result.stdout + result.stderr
        assert result.returncode != 0, output[-3000:]
        assert f"credentials.oidcProviderArn = '{arn}{expected}" in output, output[-3000:]
        assert TRACEBACK not in output
        types = {r["type"] for r in platform.export(project, "prodx")["deployment"].get("resources") or []}
        assert types <= {"pulumi:pulumi:Stack", "pulumi:providers:kubernetes", "pulumi:providers:aws", "pulumi:providers:gitlab"}, types
    finally:  # whatever happened, the next case (and the module's other stacks) start without it
        platform.pulumi("stack", "rm", "--yes", "--force", project=project, stack="prodx", check=False)


# --- b: the runner's job pods from the live config.toml -------------------------------------------------
def _wait(condition: Any, what: str, seconds: float = 120) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def live_runner(platform: LocalPlatform, namespace: str = "prod-runner") -> tuple[dict[str, Any], int]:
    """The deployed release's [runners.kubernetes] section and its `concurrent`, as the manager reads them."""
    configmap = api(platform, f"/api/v1/namespaces/{namespace}/configmaps/gitlab-runner")
    kube = tomllib.loads(configmap["data"]["config.template.toml"])["runners"][0]["kubernetes"]
    if "config.toml" in configmap["data"]:
        return kube, int(tomllib.loads(configmap["data"]["config.toml"])["concurrent"])
    return kube, int(stack_file_config("prod")["gitlab-buildkit-runner:runner"]["concurrent"])  # 16


def test_prod_job_pods_from_the_live_runner_config_are_admitted_and_fit_the_quota(platform: LocalPlatform, prod: dict[str, Any]) -> None:
    assert platform.cluster is not None
    kube, concurrent = live_runner(platform)
    assert kube["namespace"] == "prod-runner-jobs"
    _wait(
        lambda: all(
            (q.get("status") or {}).get("hard") for q in api(platform, "/api/v1/namespaces/prod-runner-jobs/resourcequotas")["items"]
        ),
        "the quota controller to count the stack's quota",
        seconds=60,
    )
    for index in range(concurrent):
        created = platform.cluster.create(job_pod(kube, f"job-{index}"))
        build = next(c for c in created["spec"]["containers"] if c["name"] == "build")
        assert build["resources"]["limits"]["cpu"] == kube["cpu_limit"]
    for index in range(concurrent):
        platform.cluster.request("DELETE", f"/api/v1/namespaces/prod-runner-jobs/pods/job-{index}")


def test_a_manager_rollout_never_runs_two_managers_jobs_against_the_quota(platform: LocalPlatform, prod: dict[str, Any]) -> None:
    """The chart's default RollingUpdate ran the draining manager beside the new one (2 x concurrent job
    pods over a quota for one). With Recreate, on the real apiserver and controllers: while the old
    manager drains (held Terminating by a finalizer, its `concurrent` job pods running), no new manager
    starts; once its jobs are gone and it is too, the new manager's first `concurrent` job pods fit."""
    cluster = platform.cluster
    assert cluster is not None
    ns, jobs = "prod-runner", "prod-runner-jobs"
    kube, concurrent = live_runner(platform, ns)
    (deployment,) = api(platform, f"/apis/apps/v1/namespaces/{ns}/deployments")["items"]
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    selector = urllib.parse.quote(",".join(f"{k}={v}" for k, v in deployment["spec"]["selector"]["matchLabels"].items()))

    def managers() -> list[dict[str, Any]]:
        return list(api(platform, f"/api/v1/namespaces/{ns}/pods?labelSelector={selector}")["items"])

    def job_pods() -> list[dict[str, Any]]:
        return list(api(platform, f"/api/v1/namespaces/{jobs}/pods")["items"])

    _wait(lambda: not job_pods(), "the earlier tests' job pods to be gone")
    (old,) = _wait(lambda: [p for p in managers() if not p["metadata"].get("deletionTimestamp")], "the manager pod")
    old["metadata"]["finalizers"] = ["e2e.gitlab-buildkit-runner/draining"]
    cluster.request("PUT", f"/api/v1/namespaces/{ns}/pods/{old['metadata']['name']}", old)
    for index in range(concurrent):  # the old manager's running jobs
        cluster.create(job_pod(kube, f"old-{index}"))
    deployment["spec"]["template"]["metadata"].setdefault("annotations", {})["e2e/rollout"] = str(time.time())
    cluster.request("PUT", f"/apis/apps/v1/namespaces/{ns}/deployments/{deployment['metadata']['name']}", deployment)
    try:
        _wait(lambda: any(p["metadata"].get("deletionTimestamp") for p in managers()), "the old manager to be stopped")
        time.sleep(5)  # time for a RollingUpdate to have started the new manager beside it
        assert [p["metadata"]["name"] for p in managers() if not p["metadata"].get("deletionTimestamp")] == []
    finally:  # the drain ends: the old manager's jobs finish, then it goes
        for index in range(concurrent):
            cluster.request("DELETE", f"/api/v1/namespaces/{jobs}/pods/old-{index}?gracePeriodSeconds=0")
        held = cluster.request("GET", f"/api/v1/namespaces/{ns}/pods/{old['metadata']['name']}")
        held["metadata"]["finalizers"] = []
        cluster.request("PUT", f"/api/v1/namespaces/{ns}/pods/{old['metadata']['name']}", held)
    _wait(lambda: not job_pods(), "the old manager's job pods to be gone")
    (new,) = _wait(lambda: [p for p in managers() if not p["metadata"].get("deletionTimestamp")], "the new manager", seconds=180)
    assert new["metadata"]["name"] != old["metadata"]["name"]
    for index in range(concurrent):  # the new manager's first jobs: no 'exceeded quota'
        cluster.create(job_pod(kube, f"new-{index}"))
    for index in range(concurrent):
        cluster.request("DELETE", f"/api/v1/namespaces/{jobs}/pods/new-{index}?gracePeriodSeconds=0")


# --- d: no plaintext secret in state or outputs --------------------------------------------------------
def test_no_secret_is_in_plain_state_outputs_or_cli_output(platform: LocalPlatform, project: Path, prod: dict[str, Any]) -> None:
    revealed = platform.export(project, "prod", show_secrets=True)
    tokens = [revealed_value(r["outputs"]["token"]) for r in resources_of(revealed, "gitlab:index/userRunner:UserRunner")]
    keys = [revealed_value(r["outputs"]["secret"]) for r in resources_of(revealed, "aws:iam/accessKey:AccessKey")]
    assert tokens and all(t.startswith("glrt-") for t in tokens) and len(keys) == 3
    plain = json.dumps(platform.export(project, "prod")) + json.dumps(platform.outputs(project, "prod"))
    cli_output = (platform.workdir / "pulumi.log").read_text().replace(json.dumps(revealed), "")
    for value in [*tokens, *keys, platform.gitlab_token]:
        assert value not in plain
    for value in [*tokens, *keys]:
        assert value not in cli_output.replace(json.dumps(revealed, indent=4), "")
    # ... while the values reached their consumers: the Secret and the masked, protected variables.
    variable = gitlab_get(platform, "projects/acme%2Fweb/variables/AWS_SECRET_ACCESS_KEY?filter%5Benvironment_scope%5D=production")
    assert variable["value"] in keys and variable["masked"] and variable["protected"]


# --- e: the README's access-key rotation on the protected prod stack ----------------------------------
def _active_key(platform: LocalPlatform) -> str:
    return str(gitlab_get(platform, "projects/acme%2Fweb/variables/AWS_ACCESS_KEY_ID?filter%5Benvironment_scope%5D=production")["value"])


def _iam_keys(platform: LocalPlatform) -> set[str]:
    listed = aws(platform, "iam").list_access_keys(UserName="gitlab-buildkit-push-prod-acme-web")["AccessKeyMetadata"]
    return {k["AccessKeyId"] for k in listed}


def test_access_key_rotation_on_the_protected_prod_stack(platform: LocalPlatform, project: Path, prod: dict[str, Any]) -> None:
    up = platform.up_args(project)
    blue = _active_key(platform)
    assert _iam_keys(platform) == {blue}
    set_stack_config(project, "prod", "credentials", accessKeySlots=["blue", "green"], activeAccessKey="blue")
    platform.pulumi(*up, project=project, stack="prod")
    (green,) = _iam_keys(platform) - {blue}
    assert _active_key(platform) == blue  # 1. the new key exists, CI still uses blue
    set_stack_config(project, "prod", "credentials", activeAccessKey="green")
    platform.pulumi(*up, project=project, stack="prod")
    assert _active_key(platform) == green  # 2. the variables hold green
    set_stack_config(project, "prod", "credentials", accessKeySlots=["green"])
    platform.pulumi(*up, project=project, stack="prod")  # 3. blue is deleted although the stack is protected
    assert _iam_keys(platform) == {green} and _active_key(platform) == green


# --- h: the unconfined mode under the real CLI -------------------------------------------------------
def test_unconfined_without_acknowledgement_fails_cleanly_before_any_resource(platform: LocalPlatform, project: Path) -> None:
    config = namespaced(stack_file_config("dev"), "unc")
    config["gitlab-buildkit-runner:runner"] = {**config["gitlab-buildkit-runner:runner"], "jobSecurityMode": "unconfined"}
    platform.new_stack("unc", config, project)
    result = platform.pulumi("up", "--yes", project=project, stack="unc", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "invalid stack configuration" in output and "acknowledgeUnconfined: true" in output, output[-3000:]
    assert TRACEBACK not in output
    assert {r["type"] for r in platform.export(project, "unc")["deployment"].get("resources") or []} <= {"pulumi:pulumi:Stack"}


def test_unconfined_with_acknowledgement_previews_under_the_pack(platform: LocalPlatform, project: Path) -> None:
    set_stack_config(project, "unc", "runner", acknowledgeUnconfined=True)
    result = platform.pulumi(
        "preview",
        "--policy-pack",
        str(project / "policies"),
        "--policy-pack-config",
        str(platform.policy_config()),
        project=project,
        stack="unc",
    )
    assert "privileged" in result.stdout or "create" in result.stdout
    platform.pulumi("stack", "rm", "--yes", "--force", project=project, stack="unc")


# --- g: destroy --------------------------------------------------------------------------------------
def test_prod_destroy_is_refused_by_its_protected_resources(platform: LocalPlatform, project: Path, prod: dict[str, Any]) -> None:
    result = platform.pulumi("destroy", "--yes", project=project, stack="prod", check=False)
    assert result.returncode != 0
    assert "protected" in (result.stdout + result.stderr)
    repositories = {r["repositoryName"] for r in aws(platform, "ecr").describe_repositories()["repositories"]}
    assert "acme/prod/web" in repositories


def test_dev_destroy_removes_everything_it_made(platform: LocalPlatform, project: Path, dev: dict[str, Any], prod: dict[str, Any]) -> None:
    runner_id = dev["outputs"]["runnerId"]
    platform.pulumi("destroy", "--yes", project=project, stack="dev", timeout=1800)
    repositories = {r["repositoryName"] for r in aws(platform, "ecr").describe_repositories()["repositories"]}
    assert not any(name.startswith("acme/dev/") for name in repositories)
    assert not [u for u in aws(platform, "iam").list_users()["Users"] if "-dev-" in u["UserName"]]
    with pytest.raises(urllib.error.HTTPError):
        gitlab_get(platform, f"runners/{runner_id}")
    assert platform.export(project, "dev")["deployment"].get("resources") in (None, [])
    try:
        phase = api(platform, "/api/v1/namespaces/dev-runner")["status"]["phase"]
        assert phase == "Terminating"
    except ApiError as exc:
        assert exc.status == 404


# --- k: the confined mode under the real engine --------------------------------------------------------
def test_the_confined_local_stack_comes_up_and_its_job_pod_is_admitted_at_baseline(
    platform: LocalPlatform, project: Path, dev: dict[str, Any]
) -> None:
    # After dev's destroy: `local` is a dev-environment stack (same IAM names) in the same account.
    assert platform.cluster is not None
    config = namespaced(stack_file_config("local"), "local")
    config["gitlab-buildkit-runner:credentials"] = {"oidcProvider": "create"}
    platform.new_stack("local", config, project)
    platform.pulumi(*platform.up_args(project), project=project, stack="local", timeout=1800)
    result = platform.outputs(project, "local")
    assert result["jobSecurityMode"] == "confined"
    labels = api(platform, "/api/v1/namespaces/local-runner-jobs")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "baseline"
    configmap = api(platform, "/api/v1/namespaces/local-runner/configmaps/gitlab-runner")
    kube = tomllib.loads(configmap["data"]["config.template.toml"])["runners"][0]["kubernetes"]
    created = platform.cluster.create(job_pod(kube, "confined-job"))
    build = next(c for c in created["spec"]["containers"] if c["name"] == "build")
    profile = build["securityContext"]["seccompProfile"]
    assert profile == {"type": "Localhost", "localhostProfile": result["confinedProfiles"]["seccomp"]["localhostProfile"]}, (
        profile,
        result,
    )
    platform.pulumi("destroy", "--yes", project=project, stack="local", timeout=1800)


def test_platform_errors_name_the_failing_command(platform: LocalPlatform, project: Path) -> None:
    with pytest.raises(PlatformError, match=r"pulumi stack select no-such-stack \(stack None\) failed"):
        platform.pulumi("stack", "select", "no-such-stack", project=project)
