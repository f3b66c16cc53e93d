"""Policy pack entry point: only assembles the pack from the per-domain modules."""

import aws
import k8s_workloads
import namespaces_rbac
import network
import runner
from pulumi_policy import EnforcementLevel, PolicyPack

PolicyPack(
    name="gitlab-buildkit-runner",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=[
        *k8s_workloads.policies(),
        *runner.policies(),
        *namespaces_rbac.policies(),
        *network.policies(),
        *aws.policies(),
    ],
)
