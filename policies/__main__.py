"""Policy pack entry point: only assembles the pack from the per-domain modules."""

import aws_policies
import helm_release_policies
import namespace_rbac_policies
import network_policies
import pod_security_policies
import runner_carriers
import runner_release_policies
import warm_builder_policies
from pulumi_policy import EnforcementLevel, PolicyPack

PolicyPack(
    name="gitlab-buildkit-runner",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=[
        *pod_security_policies.policies(),
        *runner_release_policies.policies(),
        *runner_carriers.policies(),
        *helm_release_policies.policies(),
        *namespace_rbac_policies.policies(),
        *network_policies.policies(),
        *aws_policies.policies(),
        *warm_builder_policies.policies(),
    ],
)
