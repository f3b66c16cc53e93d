"""pod_spec patches are read as the runner reads them, or refused (issue 23, class 1).

The runner reads a patch with sigs.k8s.io/yaml (YAML 1.1) and decodes the patched pod with Go's
encoding/json, which matches keys case-insensitively with Unicode simple folding and lets a later key
win. Each case below is a patch that a reader of exact camelCase keys with Python's YAML saw as harmless
while the runner built a weaker pod from it; the pack must refuse it through its gRPC protocol, naming
the patch, the key and the API's spelling. The e2e tier's oracle (the runner's own decoding libraries)
checks the same property on a generated corpus.
"""

from __future__ import annotations

import json
import sys

import pytest
from test_policy_pack import RELEASE, ResourceInput, mandatory, replace, runner_toml_edit, stack_resources

from verify.harness import ROOT, run_stack
from verify.policy_client import PolicyPack

sys.path.insert(0, str(ROOT / "policies"))
from pod_spec_patches import PatchError, apply_patch

POLICY = "gitlab-runner-pod-spec-patches"


@pytest.fixture(scope="module")
def dev_resources() -> list[ResourceInput]:
    return stack_resources(run_stack("dev"))


def with_patch(patch_type: str, patch: str) -> object:
    # A TOML literal multi-line string holds the patch verbatim (no escapes), as an operator would write it.
    table = f"\n[[runners.kubernetes.pod_spec]]\nname = \"extra\"\npatch_type = \"{patch_type}\"\npatch = '''\n{patch}\n'''\n"
    return runner_toml_edit(lambda text: text + table)


KELVIN = "\u212a"  # Go's simple folding maps it to 'k'
LONG_S = "\u017f"  # ... and this to 's'

ESCAPES = [
    ("strategic", "hostpid: true", "'hostpid' is not the API's spelling: Go's decoder reads it as 'hostPID'"),
    ("merge", "HostNetwork: true", "reads it as 'hostNetwork'"),
    ("strategic", f"hostNetwor{KELVIN}: true", "reads it as 'hostNetwork'"),
    ("strategic", f"containers:\n- name: build\n  {LONG_S}ecurityContext:\n    privileged: true", "reads it as 'securityContext'"),
    ("strategic", "containers:\n- name: build\n  securityContext:\n    Privileged: true", "reads it as 'privileged'"),
    ("strategic", "containers:\n- name: build\n  securityContext:\n    capabilities:\n      ADD: [SYS_ADMIN]", "reads it as 'add'"),
    ("strategic", "initContainers:\n- name: init-permissions\n  securitycontext:\n    privileged: true", "reads it as 'securityContext'"),
    ("merge", "SecurityContext:\n  seccompProfile:\n    type: Unconfined", "reads it as 'securityContext'"),
    ("strategic", "volumes:\n- name: root\n  hostpath:\n    path: /", "reads it as 'hostPath'"),
    (
        "strategic",
        "ephemeralContainers:\n- name: debug\n  image: busybox\n  securityContext:\n    PRIVILEGED: true",
        "reads it as 'privileged'",
    ),
    # a later spelling of a key wins in Go; a repeated key is refused outright
    ("strategic", "hostPID: false\nhostPID: true", "repeats the key 'hostPID'"),
    (
        "strategic",
        "containers:\n- name: build\n  securityContext:\n    privileged: false\n    privileged: true",
        "repeats the key 'privileged'",
    ),
    # YAML 1.1 scalars: `y` is true to the runner, a string to a YAML 1.2 reader
    ("strategic", "hostPID: y", "the unquoted value 'y' is read differently by YAML 1.1"),
    ("strategic", "hostIPC: On", "the unquoted value 'On'"),
    ("strategic", "x: &a true\nhostPID: *a", "anchor or alias"),
    ("strategic", 'hostPID: !!bool "true"', "explicit YAML tag"),
    ("strategic", "true: 1", "not a string"),
    # JSON patches: the path and the value are read with the same rules
    ("json", '[{"op": "add", "path": "/hostpid", "value": true}]', "'hostpid' is not the API's spelling"),
    (
        "json",
        '[{"op": "add", "path": "/containers/-", "value": {"name": "side", "image": "busybox", "securityContext": {"privileged ": true}}}]',
        "'privileged ' is not a field here",
    ),
    ("json", '[{"op": "add", "path": "/containers/0/securityContext/Privileged", "value": true}]', "reads it as 'privileged'"),
    ("json", '[{"op": "add", "path": "/hostPID", "value": true, "Path": "/x"}]', "a JSON patch operation has op, path, value, from"),
    ("json", '[{"op": "add", "path": "/hostPID", "value": true, "path": "/hostNetwork"}]', "repeats the key 'path'"),
]


@pytest.mark.parametrize(("patch_type", "patch", "message"), ESCAPES)
def test_patches_read_otherwise_by_the_runner_are_refused(patch_type: str, patch: str, message: str) -> None:
    with pytest.raises(PatchError) as caught:
        apply_patch({"containers": [{"name": "build"}]}, patch_type, patch, "extra")
    assert str(caught.value).startswith("pod_spec patch 'extra' ")
    assert message in str(caught.value)


@pytest.mark.parametrize(("patch_type", "patch", "message"), ESCAPES[:6] + ESCAPES[10:13] + ESCAPES[17:18])
def test_the_pack_refuses_them_over_its_protocol(
    pack: PolicyPack, dev_resources: list[ResourceInput], patch_type: str, patch: str, message: str
) -> None:
    found = pack.analyze_all(replace(dev_resources, RELEASE, with_patch(patch_type, patch)))
    refusals = [d.message for d in found if d.level == "mandatory" and d.policy == POLICY]
    assert any(message in text and "pod_spec patch 'extra'" in text for text in refusals), refusals


@pytest.mark.parametrize(
    ("patch_type", "patch"),
    [
        ("strategic", "nodeSelector:\n  disktype: ssd"),
        ("strategic", "containers:\n- name: build\n  resources:\n    limits:\n      memory: 8Gi\n      cpu: 500m"),
        ("merge", "priorityClassName: builds\nterminationGracePeriodSeconds: 30"),
        ("strategic", 'tolerations:\n- key: "dedicated"\n  operator: Equal\n  value: "builds"\n  effect: NoSchedule'),
        ("json", json.dumps([{"op": "add", "path": "/nodeSelector", "value": {"pool": "builds"}}])),
    ],
)
def test_patches_in_the_apis_own_spelling_pass(pack: PolicyPack, dev_resources: list[ResourceInput], patch_type: str, patch: str) -> None:
    apply_patch({"containers": [{"name": "build"}]}, patch_type, patch, "extra")
    assert mandatory(pack, replace(dev_resources, RELEASE, with_patch(patch_type, patch))) == []


def test_merge_keys_come_from_the_schema() -> None:
    # volumeMounts merge by mountPath, ports by containerPort (the API's patchMergeKey), not by name.
    spec = {"containers": [{"name": "build", "volumeMounts": [{"name": "a", "mountPath": "/a"}]}]}
    patched = apply_patch(spec, "strategic", "containers:\n- name: build\n  volumeMounts:\n  - name: b\n    mountPath: /a", "m")
    assert patched["containers"][0]["volumeMounts"] == [{"name": "b", "mountPath": "/a"}]


@pytest.mark.parametrize("patch_type", ["strategic", "json"])
def test_an_unreadable_patch_is_a_violation_not_a_crash(pack: PolicyPack, dev_resources: list[ResourceInput], patch_type: str) -> None:
    # Deep flow nesting (slow for the YAML parser), deep block nesting (a recursion limit), a huge patch.
    deep = "[" * 5000 + "]" * 5000 if patch_type == "json" else "".join(" " * i + "b:\n" for i in range(0, 1200))
    found = pack.analyze_all(replace(dev_resources, RELEASE, with_patch(patch_type, deep)))
    assert any(d.policy == POLICY and d.level == "mandatory" for d in found)
