"""The AWS account and partition the explicit provider points at, looked up once.

Data-source invokes run during `pulumi preview` too, so everything derived from them (repository
ARNs and URLs, the push policy, the policy and OIDC provider ARNs) is known at preview. Derived from
resource outputs instead, those values would be unknown on a stack's first preview, and the
fail-closed IAM policies of the pack would (rightly) reject the unknown documents.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws


@dataclass(frozen=True)
class AwsAccount:
    account_id: pulumi.Output[str]
    partition: pulumi.Output[str]
    dns_suffix: pulumi.Output[str]
    region: str

    def registry_host(self) -> pulumi.Output[str]:
        return pulumi.Output.all(self.account_id, self.dns_suffix).apply(lambda v: f"{v[0]}.dkr.ecr.{self.region}.{v[1]}")

    def iam_arn(self, resource: str) -> pulumi.Output[str]:
        """arn:<partition>:iam::<account>:<resource> (IAM is global: no region)."""
        return pulumi.Output.all(self.partition, self.account_id).apply(lambda v: f"arn:{v[0]}:iam::{v[1]}:{resource}")


def lookup_account(region: str, provider: aws.Provider) -> AwsAccount:
    opts = pulumi.InvokeOutputOptions(provider=provider)
    identity = aws.get_caller_identity_output(opts=opts)
    partition = aws.get_partition_output(opts=opts)
    return AwsAccount(
        account_id=identity.account_id,
        partition=partition.partition,
        dns_suffix=partition.dns_suffix,
        region=region,
    )


def repository_arn(partition: str, region: str, account_id: str, name: str) -> str:
    return f"arn:{partition}:ecr:{region}:{account_id}:repository/{name}"
