"""The generated push policy enforced by a real IAM implementation (moto server with IAM enforcement).

moto enforces IAM *actions* for ECR but authorises every ECR request against the resource '*': a
statement scoped to exact repository ARNs never matches there, and every push would be denied. So the
generated document is loaded with its action lists exactly as built and only the repository ARNs
widened to '*' (`actions_only`). This proves the action set (login + push allowed; repository
administration, IAM and other services denied). The ARN scoping is proven elsewhere: the exact
Resource list in tests/test_aws_documents.py and policy_sentry's ARN-format check.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

boto3 = pytest.importorskip("boto3")
from botocore.exceptions import ClientError  # noqa: E402

from components.aws_documents import preview_read_policy, push_policy  # noqa: E402

REGION = "eu-west-1"
# Requests made with the root credentials before IAM enforcement starts (setup below).
SETUP_CALLS = 10


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    server = Path(sys.executable).with_name("moto_server")
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(SETUP_CALLS), "HOME": str(tmp_path_factory.mktemp("moto"))}
    process = subprocess.Popen(
        [str(server), "-H", "127.0.0.1", "-p", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.2)
    else:
        process.kill()
        pytest.fail("moto_server did not start")
    yield url
    process.kill()
    process.wait(timeout=10)


def actions_only(document: dict) -> dict:
    """The generated document with repository ARNs widened to '*' (see the module docstring)."""
    widened = json.loads(json.dumps(document))
    for statement in widened["Statement"]:
        statement["Resource"] = "*"
    return widened


def client(service: str, endpoint: str, key: str = "root", secret: str = "root"):
    return boto3.client(service, region_name=REGION, endpoint_url=endpoint, aws_access_key_id=key, aws_secret_access_key=secret)


@pytest.fixture(scope="module")
def pusher(endpoint: str) -> dict[str, str]:
    return identities(endpoint)["pusher"]


@pytest.fixture(scope="module")
def previewer(endpoint: str) -> dict[str, str]:
    return identities(endpoint)["previewer"]


_IDENTITIES: dict[str, dict[str, dict[str, str]]] = {}


def identities(endpoint: str) -> dict[str, dict[str, str]]:
    """Every identity, created in one go with the root credentials (before IAM enforcement starts)."""
    if endpoint not in _IDENTITIES:
        _IDENTITIES[endpoint] = {"pusher": _create_pusher(endpoint), "previewer": _create_previewer(endpoint)}
    return _IDENTITIES[endpoint]


def _create_pusher(endpoint: str) -> dict[str, str]:
    ecr, iam = client("ecr", endpoint), client("iam", endpoint)
    arns = [ecr.create_repository(repositoryName=name)["repository"]["repositoryArn"] for name in ("acme/web", "buildkit-cache")]
    iam.create_user(UserName="pusher")
    policy_arn = iam.create_policy(PolicyName="push", PolicyDocument=json.dumps(actions_only(push_policy(arns))))["Policy"]["Arn"]
    iam.attach_user_policy(UserName="pusher", PolicyArn=policy_arn)
    key = iam.create_access_key(UserName="pusher")["AccessKey"]
    return {"key": key["AccessKeyId"], "secret": key["SecretAccessKey"]}


def denied(call) -> bool:
    try:
        call()
    except ClientError as exc:
        code = exc.response["Error"]["Code"]
        status = exc.response["ResponseMetadata"]["HTTPStatusCode"]
        return status == 403 or code in ("AccessDenied", "AccessDeniedException", "403")
    return False


def test_push_identity_can_log_in_and_push(endpoint: str, pusher: dict[str, str]) -> None:
    ecr = client("ecr", endpoint, pusher["key"], pusher["secret"])
    token = ecr.get_authorization_token()["authorizationData"][0]
    assert token["authorizationToken"]
    # Push/pull calls are authorised (they may still fail for lack of a registry data plane, never with 403).
    for call in (
        lambda: ecr.batch_check_layer_availability(repositoryName="acme/web", layerDigests=["sha256:" + "0" * 64]),
        lambda: ecr.put_image(
            repositoryName="acme/web",
            imageManifest=json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 2, "digest": "sha256:" + "1" * 64},
                    "layers": [],
                }
            ),
            imageTag="v1",
        ),
        lambda: ecr.batch_get_image(repositoryName="acme/web", imageIds=[{"imageTag": "v1"}]),
    ):
        assert not denied(call)


def test_push_identity_cannot_administer_or_leave_ecr(endpoint: str, pusher: dict[str, str]) -> None:
    ecr = client("ecr", endpoint, pusher["key"], pusher["secret"])
    iam = client("iam", endpoint, pusher["key"], pusher["secret"])
    s3 = client("s3", endpoint, pusher["key"], pusher["secret"])
    assert denied(lambda: ecr.delete_repository(repositoryName="acme/web", force=True))
    assert denied(lambda: ecr.create_repository(repositoryName="evil"))
    assert denied(
        lambda: ecr.put_lifecycle_policy(
            repositoryName="acme/web",
            lifecyclePolicyText=json.dumps(
                {
                    "rules": [
                        {
                            "rulePriority": 1,
                            "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1},
                            "action": {"type": "expire"},
                        }
                    ]
                }
            ),
        )
    )
    assert denied(
        lambda: ecr.set_repository_policy(
            repositoryName="acme/web",
            policyText=json.dumps(
                {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "ecr:BatchGetImage"}]}
            ),
        )
    )
    assert denied(lambda: iam.list_users())
    assert denied(lambda: iam.create_access_key(UserName="pusher"))
    assert denied(lambda: s3.list_buckets())


def test_enforcement_is_real(endpoint: str, pusher: dict[str, str]) -> None:
    """Unknown credentials are refused too: the allowed calls above are allowed by the policy."""
    ecr = client("ecr", endpoint, "AKIAUNKNOWN000000000", "nope")
    assert denied(lambda: ecr.get_authorization_token())


# --- The read-only preview identity ------------------------------------------------------------------


def _create_previewer(endpoint: str) -> dict[str, str]:
    iam = client("iam", endpoint)
    repo = "arn:aws:ecr:eu-west-1:123456789012:repository/acme/web"
    document = preview_read_policy(
        [repo],
        {
            "user": ["arn:aws:iam::123456789012:user/pusher"],
            "policy": ["arn:aws:iam::123456789012:policy/push"],
            "oidc-provider": ["arn:aws:iam::123456789012:oidc-provider/gitlab.example.com"],
        },
    )
    iam.create_user(UserName="previewer")
    policy_arn = iam.create_policy(PolicyName="preview", PolicyDocument=json.dumps(actions_only(document)))["Policy"]["Arn"]
    iam.attach_user_policy(UserName="previewer", PolicyArn=policy_arn)
    key = iam.create_access_key(UserName="previewer")["AccessKey"]
    return {"key": key["AccessKeyId"], "secret": key["SecretAccessKey"]}


def test_preview_identity_can_read_the_stack(endpoint: str, pusher: dict[str, str], previewer: dict[str, str]) -> None:
    ecr = client("ecr", endpoint, previewer["key"], previewer["secret"])
    iam = client("iam", endpoint, previewer["key"], previewer["secret"])
    assert not denied(lambda: ecr.describe_repositories(repositoryNames=["acme/web"]))
    assert not denied(lambda: iam.get_user(UserName="pusher"))
    assert not denied(lambda: iam.list_access_keys(UserName="pusher"))


def test_preview_identity_cannot_write_pull_or_push(endpoint: str, pusher: dict[str, str], previewer: dict[str, str]) -> None:
    ecr = client("ecr", endpoint, previewer["key"], previewer["secret"])
    iam = client("iam", endpoint, previewer["key"], previewer["secret"])
    assert denied(lambda: ecr.get_authorization_token())  # no registry login: no image push or pull
    assert denied(lambda: ecr.put_image(repositoryName="acme/web", imageManifest="{}", imageTag="x"))
    assert denied(lambda: ecr.batch_get_image(repositoryName="acme/web", imageIds=[{"imageTag": "v1"}]))
    assert denied(lambda: ecr.create_repository(repositoryName="evil"))
    assert denied(lambda: ecr.delete_repository(repositoryName="acme/web", force=True))
    assert denied(lambda: ecr.set_repository_policy(repositoryName="acme/web", policyText="{}"))
    assert denied(lambda: iam.create_access_key(UserName="pusher"))
    assert denied(lambda: iam.attach_user_policy(UserName="previewer", PolicyArn="arn:aws:iam::aws:policy/AdministratorAccess"))
    assert denied(lambda: iam.create_user(UserName="evil"))
    assert denied(lambda: iam.update_assume_role_policy(RoleName="x", PolicyDocument="{}"))
