"""**Stand-in** `aws` provider plugin (pulumi-aws 7.51.1's resource and invoke tokens) over moto.

Implements exactly what the stack uses, against a moto server on 127.0.0.1 (`GBR_AWS_ENDPOINT`), so
AWS's own rules that moto models hold under the real engine: IAM names unique per account, one OIDC
provider per URL (`EntityAlreadyExists`), repositories unique per registry, a role or user that still
has attachments cannot be deleted. Outputs are shaped as the real provider's (ids, ARNs, `tagsAll`
with the provider's `defaultTags`, the access key's `secret` as a secret output). Inputs are checked
against the pinned Python SDK's generated types (`schema.py`). Replacement follows the real
provider's ForceNew properties for the fields the stack sets.

Ref: https://www.pulumi.com/registry/packages/aws/api-docs/ (resource and function references, v7)
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import boto3
from botocore.exceptions import ClientError

from .provider import ProviderError, ResourceType, StandinProvider, serve
from .schema import Schema

VERSION = "7.51.1"


def _client(service: str, config: dict[str, Any]) -> Any:
    endpoint = os.environ.get("GBR_AWS_ENDPOINT")
    if not endpoint:
        raise ProviderError("stand-in aws: GBR_AWS_ENDPOINT (the moto server's URL) is not set")
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=config.get("region") or "us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _call(method: Any, **kwargs: Any) -> Any:
    try:
        return method(**{k: v for k, v in kwargs.items() if v is not None})
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise ProviderError(f"operation error {exc.operation_name}: {error.get('Code')}: {error.get('Message')}") from None


def _missing(exc: ProviderError) -> bool:
    return any(code in str(exc) for code in ("NoSuchEntity", "NotFoundException", "NotFound"))


def _tags_all(props: dict[str, Any]) -> dict[str, str]:
    config = props.get("__config", {})
    defaults = config.get("defaultTags") or {}
    if isinstance(defaults, str):
        defaults = json.loads(defaults)
    return {**(defaults.get("tags") or {}), **(props.get("tags") or {})}


def _tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in sorted(tags.items())]


# --- ECR ------------------------------------------------------------------------------------------
def _repository_outputs(repo: dict[str, Any]) -> dict[str, Any]:
    return {"arn": repo["repositoryArn"], "registryId": repo["registryId"], "repositoryUrl": repo["repositoryUri"]}


def repository_create(p: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    ecr = _client("ecr", p["__config"])
    encryption = (p.get("encryptionConfigurations") or [{}])[0]
    repo = _call(
        ecr.create_repository,
        repositoryName=p["name"],
        imageTagMutability=p.get("imageTagMutability") or "MUTABLE",
        imageScanningConfiguration={"scanOnPush": bool((p.get("imageScanningConfiguration") or {}).get("scanOnPush"))},
        encryptionConfiguration={
            "encryptionType": encryption.get("encryptionType") or "AES256",
            **({"kmsKey": encryption["kmsKey"]} if encryption.get("kmsKey") else {}),
        },
        tags=_tag_list(_tags_all(p)),
    )["repository"]
    return p["name"], {**_repository_outputs(repo), "tagsAll": _tags_all(p)}


def repository_read(ident: str, p: dict[str, Any]) -> dict[str, Any] | None:
    try:
        repo = _call(_client("ecr", p["__config"]).describe_repositories, repositoryNames=[ident])["repositories"][0]
    except ProviderError as exc:
        if _missing(exc) or "RepositoryNotFound" in str(exc):
            return None
        raise
    return {**_repository_outputs(repo), "name": ident, "imageTagMutability": repo["imageTagMutability"]}


def repository_update(ident: str, olds: dict[str, Any], news: dict[str, Any]) -> dict[str, Any]:
    ecr = _client("ecr", news["__config"])
    if olds.get("imageTagMutability") != news.get("imageTagMutability"):
        _call(ecr.put_image_tag_mutability, repositoryName=ident, imageTagMutability=news.get("imageTagMutability") or "MUTABLE")
    if olds.get("imageScanningConfiguration") != news.get("imageScanningConfiguration"):
        scan = bool((news.get("imageScanningConfiguration") or {}).get("scanOnPush"))
        _call(ecr.put_image_scanning_configuration, repositoryName=ident, imageScanningConfiguration={"scanOnPush": scan})
    return {"tagsAll": _tags_all(news)}


def repository_delete(ident: str, p: dict[str, Any]) -> None:
    _call(_client("ecr", p["__config"]).delete_repository, repositoryName=ident, force=bool(p.get("forceDelete")))


def lifecycle_put(p: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    result = _call(_client("ecr", p["__config"]).put_lifecycle_policy, repositoryName=p["repository"], lifecyclePolicyText=p["policy"])
    return p["repository"], {"registryId": result["registryId"]}


def lifecycle_read(ident: str, p: dict[str, Any]) -> dict[str, Any] | None:
    try:
        result = _call(_client("ecr", p["__config"]).get_lifecycle_policy, repositoryName=ident)
    except ProviderError as exc:
        if "NotFound" in str(exc):
            return None
        raise
    return {"repository": ident, "registryId": result["registryId"]}


def lifecycle_delete(ident: str, p: dict[str, Any]) -> None:
    _call(_client("ecr", p["__config"]).delete_lifecycle_policy, repositoryName=ident)


def repository_policy_put(p: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    result = _call(_client("ecr", p["__config"]).set_repository_policy, repositoryName=p["repository"], policyText=p["policy"])
    return p["repository"], {"registryId": result["registryId"]}


def repository_policy_read(ident: str, p: dict[str, Any]) -> dict[str, Any] | None:
    try:
        result = _call(_client("ecr", p["__config"]).get_repository_policy, repositoryName=ident)
    except ProviderError as exc:
        if "NotFound" in str(exc):
            return None
        raise
    return {"repository": ident, "registryId": result["registryId"]}


def repository_policy_delete(ident: str, p: dict[str, Any]) -> None:
    _call(_client("ecr", p["__config"]).delete_repository_policy, repositoryName=ident)


# --- IAM ------------------------------------------------------------------------------------------
def _read_or_none(fn: Any) -> dict[str, Any] | None:
    try:
        return dict(fn())
    except ProviderError as exc:
        if _missing(exc):
            return None
        raise


def policy_create(p: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    result = _call(
        _client("iam", p["__config"]).create_policy,
        PolicyName=p["name"],
        Path=p.get("path") or "/",
        PolicyDocument=p["policy"],
        Description=p.get("description"),
        Tags=_tag_list(_tags_all(p)) or None,
    )["Policy"]
    return result["Arn"], {
        "arn": result["Arn"],
        "policyId": result["PolicyId"],
        "attachmentCount": 0,
        "path": result["Path"],
        "tagsAll": _tags_all(p),
    }


def policy_read(ident: str, p: dict[str, Any]) -> dict[str, Any] | None:
    iam = _client("iam", p["__config"])
    found = _read_or_none(lambda: _call(iam.get_policy, PolicyArn=ident)["Policy"])
    if found is None:
        return None
    version = _call(iam.get_policy_version, PolicyArn=ident, VersionId=found["DefaultVersionId"])["PolicyVersion"]
    document = version["Document"]
    document = document if isinstance(document, str) else json.dumps(document)
    return {
        "arn": ident,
        "name": found["PolicyName"],
        "attachmentCount": found.get("AttachmentCount", 0),
        "policy": _same_json(p.get("policy"), document),
    }


def _same_json(old: Any, new: str) -> str:
    """The stored document when it means the same JSON (the real provider suppresses such diffs)."""
    try:
        return str(old) if old is not None and json.loads(old) == json.loads(new) else new
    except (TypeError, json.JSONDecodeError):
        return new


def policy_update(ident: str, olds: dict[str, Any], news: dict[str, Any]) -> dict[str, Any]:
    iam = _client("iam", news["__config"])
    if olds.get("policy") != news.get("policy"):
        versions = _call(iam.list_policy_versions, PolicyArn=ident)["Versions"]
        for old in sorted((v for v in versions if not v["IsDefaultVersion"]), key=lambda v: v["CreateDate"])[: max(0, len(versions) - 4)]:
            _call(iam.delete_policy_version, PolicyArn=ident, VersionId=old["VersionId"])
        _call(iam.create_policy_version, PolicyArn=ident, PolicyDocument=news["policy"], SetAsDefault=True)
    return {"tagsAll": _tags_all(news)}


def policy_delete(ident: str, p: dict[str, Any]) -> None:
    iam = _client("iam", p["__config"])
    for version in _call(iam.list_policy_versions, PolicyArn=ident)["Versions"]:
        if not version["IsDefaultVersion"]:
            _call(iam.delete_policy_version, PolicyArn=ident, VersionId=version["VersionId"])
    _call(iam.delete_policy, PolicyArn=ident)


def role_create(p: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    role = _call(
        _client("iam", p["__config"]).create_role,
        RoleName=p["name"],
        Path=p.get("path") or "/",
        AssumeRolePolicyDocument=p["assumeRolePolicy"],
        Description=p.get("description"),
        MaxSessionDuration=int(p.get("maxSessionDuration") or 3600),
        Tags=_tag_list(_tags_all(p)) or None,
    )["Role"]
    return p["name"], {"arn": role["Arn"], "uniqueId": role["RoleId"], "createDate": str(role["CreateDate"]), "tagsAll": _tags_all(p)}


def role_read(ident: str, p: dict[str, Any]) -> dict[str, Any] | None:
    role = _read_or_none(lambda: _call(_client("iam", p["__config"]).get_role, RoleName=ident)["Role"])
    if role is None:
        return None
    document = role["AssumeRolePolicyDocument"]
    document = document if isinstance(document, str) else json.dumps(document)
    return {
        "arn": role["Arn"],
        "name": ident,
        "maxSessionDuration": role.get("MaxSessionDuration", 3600),
        "assumeRolePolicy": _same_json(p.get("assumeRolePolicy"), document),
    }


def role_update(ident: str, olds: dict[str, Any], news: dict[str, Any]) -> dict[str, Any]:
    iam = _client("iam", news["__config"])
    if olds.get("assumeRolePolicy") != news.get("assumeRolePolicy"):
        _call(iam.update_assume_role_policy, RoleName=ident, PolicyDocument=news["assumeRolePolicy"])
    if (olds.get("maxSessionDuration"), olds.get("description")) != (news.get("maxSessionDuration"), news.get("description")):
        _call(
            iam.update_role,
            RoleName=ident,
            MaxSessionDuration=int(news.get("maxSessionDuration") or 3600),
            Description=news.get("description"),
        )
    return {"tagsAll": _tags_all(news)}


def role_delete(ident: str, p: dict[str, Any]) -> None:
    _call(_client("iam", p["__config"]).delete_role, RoleName=ident)


def role_attachment_create(p: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    _call(_client("iam", p["__config"]).attach_role_policy, RoleName=p["role"], PolicyArn=p["policyArn"])
    return f"{p['role']}-{time.strftime('%Y%m%d%H%M%S')}{time.monotonic_ns() % 10**8:08d}", {}


def role_attachment_read(ident: str, p: dict[str, Any]) -> dict[str, Any] | None:
    iam = _client("iam", p["__config"])
    attached = _read_or_none(lambda: _call(iam.list_attached_role_policies, RoleName=p["role"]))
    if attached is None or p["policyArn"] not in [a["PolicyArn"] for a in attached["AttachedPolicies"]]:
        return None
    return {"role": p["role"], "policyArn": p["policyArn"]}


def role_attachment_delete(ident: str, p: dict[str, Any]) -> None:
    _call(_client("iam", p["__config"]).detach_role_policy, RoleName=p["role"], PolicyArn=p["policyArn"])


def user_create(p: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    user = _call(
        _client("iam", p["__config"]).create_user, UserName=p["name"], Path=p.get("path") or "/", Tags=_tag_list(_tags_all(p)) or None
    )["User"]
    return p["name"], {"arn": user["Arn"], "uniqueId": user["UserId"], "tagsAll": _tags_all(p)}


def user_read(ident: str, p: dict[str, Any]) -> dict[str, Any] | None:
    user = _read_or_none(lambda: _call(_client("iam", p["__config"]).get_user, UserName=ident)["User"])
    return None if user is None else {"arn": user["Arn"], "name": ident}


def user_delete(ident: str, p: dict[str, Any]) -> None:
    iam = _client("iam", p["__config"])
    if p.get("forceDestroy"):
        for key in _call(iam.list_access_keys, UserName=ident)["AccessKeyMetadata"]:
            _call(iam.delete_access_key, UserName=ident, AccessKeyId=key["AccessKeyId"])
    _call(iam.delete_user, UserName=ident)


def user_attachment_create(p: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    _call(_client("iam", p["__config"]).attach_user_policy, UserName=p["user"], PolicyArn=p["policyArn"])
    return f"{p['user']}-{time.strftime('%Y%m%d%H%M%S')}{time.monotonic_ns() % 10**8:08d}", {}


def user_attachment_read(ident: str, p: dict[str, Any]) -> dict[str, Any] | None:
    iam = _client("iam", p["__config"])
    attached = _read_or_none(lambda: _call(iam.list_attached_user_policies, UserName=p["user"]))
    if attached is None or p["policyArn"] not in [a["PolicyArn"] for a in attached["AttachedPolicies"]]:
        return None
    return {"user": p["user"], "policyArn": p["policyArn"]}


def user_attachment_delete(ident: str, p: dict[str, Any]) -> None:
    _call(_client("iam", p["__config"]).detach_user_policy, UserName=p["user"], PolicyArn=p["policyArn"])


def access_key_create(p: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    key = _call(_client("iam", p["__config"]).create_access_key, UserName=p["user"])["AccessKey"]
    status = p.get("status") or "Active"
    if status != "Active":
        _call(_client("iam", p["__config"]).update_access_key, UserName=p["user"], AccessKeyId=key["AccessKeyId"], Status=status)
    return key["AccessKeyId"], {"secret": key["SecretAccessKey"], "status": status, "createDate": str(key["CreateDate"])}


def access_key_read(ident: str, p: dict[str, Any]) -> dict[str, Any] | None:
    keys = _read_or_none(lambda: _call(_client("iam", p["__config"]).list_access_keys, UserName=p["user"]))
    match = [k for k in (keys or {}).get("AccessKeyMetadata", []) if k["AccessKeyId"] == ident]
    return {"user": p["user"], "status": match[0]["Status"]} if match else None


def access_key_update(ident: str, olds: dict[str, Any], news: dict[str, Any]) -> dict[str, Any]:
    _call(
        _client("iam", news["__config"]).update_access_key, UserName=news["user"], AccessKeyId=ident, Status=news.get("status") or "Active"
    )
    return {"secret": olds.get("secret"), "createDate": olds.get("createDate")}


def access_key_delete(ident: str, p: dict[str, Any]) -> None:
    _call(_client("iam", p["__config"]).delete_access_key, UserName=p["user"], AccessKeyId=ident)


def oidc_create(p: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    result = _call(
        _client("iam", p["__config"]).create_open_id_connect_provider,
        Url=p["url"],
        ClientIDList=list(p.get("clientIdLists") or []),
        ThumbprintList=list(p.get("thumbprintLists") or []),
        Tags=_tag_list(_tags_all(p)) or None,
    )
    arn = result["OpenIDConnectProviderArn"]
    return arn, {"arn": arn, "tagsAll": _tags_all(p)}


def oidc_read(ident: str, p: dict[str, Any]) -> dict[str, Any] | None:
    found = _read_or_none(lambda: _call(_client("iam", p["__config"]).get_open_id_connect_provider, OpenIDConnectProviderArn=ident))
    return None if found is None else {"arn": ident, "clientIdLists": found.get("ClientIDList", [])}


def oidc_update(ident: str, olds: dict[str, Any], news: dict[str, Any]) -> dict[str, Any]:
    iam = _client("iam", news["__config"])
    old, new = set(olds.get("clientIdLists") or []), set(news.get("clientIdLists") or [])
    for client in sorted(new - old):
        _call(iam.add_client_id_to_open_id_connect_provider, OpenIDConnectProviderArn=ident, ClientID=client)
    for client in sorted(old - new):
        _call(iam.remove_client_id_from_open_id_connect_provider, OpenIDConnectProviderArn=ident, ClientID=client)
    return {"arn": ident, "tagsAll": _tags_all(news)}


def oidc_delete(ident: str, p: dict[str, Any]) -> None:
    _call(_client("iam", p["__config"]).delete_open_id_connect_provider, OpenIDConnectProviderArn=ident)


# --- invokes --------------------------------------------------------------------------------------
def get_caller_identity(config: dict[str, Any], **_: Any) -> dict[str, Any]:
    identity = _call(_client("sts", config).get_caller_identity)
    return {"accountId": identity["Account"], "arn": identity["Arn"], "userId": identity["UserId"], "id": identity["Account"]}


def get_partition(config: dict[str, Any], **_: Any) -> dict[str, Any]:
    return {"partition": "aws", "dnsSuffix": "amazonaws.com", "reverseDnsPrefix": "com.amazonaws", "id": "aws"}


def get_open_id_connect_provider(config: dict[str, Any], arn: str | None = None, url: str | None = None, **_: Any) -> dict[str, Any]:
    """By ARN or by URL, as the real data source (its error when none matches: 'no ... found')."""
    iam = _client("iam", config)
    if arn is None:
        wanted = (url or "").removeprefix("https://")
        for entry in _call(iam.list_open_id_connect_providers)["OpenIDConnectProviderList"]:
            found = _call(iam.get_open_id_connect_provider, OpenIDConnectProviderArn=entry["Arn"])
            if found["Url"].removeprefix("https://") == wanted:
                arn = entry["Arn"]
                break
        else:
            raise ProviderError(f"reading IAM OIDC Provider (url {url}): no IAM OIDC Provider for that URL found")
    try:
        found = _call(iam.get_open_id_connect_provider, OpenIDConnectProviderArn=arn)
    except ProviderError as exc:
        raise ProviderError(f"reading IAM OIDC Provider ({arn}): couldn't find resource ({exc})") from None
    return {
        "arn": arn,
        "url": found["Url"].removeprefix("https://"),
        "clientIdLists": found.get("ClientIDList", []),
        "thumbprintLists": found.get("ThumbprintList", []),
        "tags": {},
        "id": arn,
    }


def provider() -> StandinProvider:
    computed_arn = ("id", "arn", "tagsAll")
    resources = [
        ResourceType("aws:ecr/repository:Repository", repository_create, repository_read, repository_delete, repository_update,
                     replace_on=frozenset({"name", "encryptionConfigurations"}), computed=(*computed_arn, "registryId", "repositoryUrl")),
        ResourceType("aws:ecr/lifecyclePolicy:LifecyclePolicy", lifecycle_put, lifecycle_read, lifecycle_delete,
                     lambda i, o, n: lifecycle_put(n)[1], replace_on=frozenset({"repository"}), computed=("id", "registryId")),
        ResourceType("aws:ecr/repositoryPolicy:RepositoryPolicy", repository_policy_put, repository_policy_read, repository_policy_delete,
                     lambda i, o, n: repository_policy_put(n)[1], replace_on=frozenset({"repository"}), computed=("id", "registryId")),
        ResourceType("aws:iam/policy:Policy", policy_create, policy_read, policy_delete, policy_update,
                     replace_on=frozenset({"name", "namePrefix", "path", "description"}), computed=(*computed_arn, "policyId", "attachmentCount")),
        ResourceType("aws:iam/role:Role", role_create, role_read, role_delete, role_update,
                     replace_on=frozenset({"name", "namePrefix", "path"}), computed=(*computed_arn, "uniqueId", "createDate")),
        ResourceType("aws:iam/rolePolicyAttachment:RolePolicyAttachment", role_attachment_create, role_attachment_read, role_attachment_delete,
                     replace_on=frozenset({"role", "policyArn"})),
        ResourceType("aws:iam/user:User", user_create, user_read, user_delete, lambda i, o, n: {"tagsAll": _tags_all(n)},
                     replace_on=frozenset({"name", "path"}), computed=(*computed_arn, "uniqueId")),
        ResourceType("aws:iam/userPolicyAttachment:UserPolicyAttachment", user_attachment_create, user_attachment_read, user_attachment_delete,
                     replace_on=frozenset({"user", "policyArn"})),
        ResourceType("aws:iam/accessKey:AccessKey", access_key_create, access_key_read, access_key_delete, access_key_update,
                     replace_on=frozenset({"user", "pgpKey"}), secret_outputs=frozenset({"secret", "sesSmtpPasswordV4"}),
                     computed=("id", "secret", "status", "createDate")),
        ResourceType("aws:iam/openIdConnectProvider:OpenIdConnectProvider", oidc_create, oidc_read, oidc_delete, oidc_update,
                     replace_on=frozenset({"url"}), computed=computed_arn),
    ]  # fmt: skip
    invokes = {
        "aws:index/getCallerIdentity:getCallerIdentity": get_caller_identity,
        "aws:index/getPartition:getPartition": get_partition,
        "aws:iam/getOpenIdConnectProvider:getOpenIdConnectProvider": get_open_id_connect_provider,
    }
    return StandinProvider("aws", VERSION, Schema("aws"), resources, invokes)


if __name__ == "__main__":
    serve(provider())
    sys.exit(0)
