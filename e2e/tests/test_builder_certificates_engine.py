"""The warm builders' certificates under the real engine: the dynamic provider runs through the
`pulumi-resource-pulumi-python` script beside the CLI (as a release ships it), in the program's own
virtualenv; its keys are secrets in the state; a renewal keeps the CA.

A program of its own (only the certificates resource, from the project's `components`): a whole warm
stack would also need a volume provisioner for the daemons' claims, which this tier's cluster lacks.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.platform import base_env, engine_tools
from e2e.tools import ROOT

SIG = "4dabf18193072939515e22adb298388d"
PROGRAM = """import pulumi
from components.builder_certificates import BuilderCertificates

config = pulumi.Config()
tls = BuilderCertificates(
    "tls", project="acme-web", server_names=["buildkitd-acme-web.builders.svc"],
    validity_days=30, renew_before_days=config.get_int("renewBeforeDays") or 7,
)
pulumi.export("caPem", tls.ca_pem)
pulumi.export("clientCertPem", tls.client_cert_pem)
pulumi.export("clientKeyPem", tls.client_key_pem)
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    folder = tmp_path_factory.mktemp("certificates")
    (folder / "Pulumi.yaml").write_text(f"name: certificates\nruntime:\n  name: python\n  options:\n    virtualenv: {ROOT / '.venv'}\n")
    (folder / "__main__.py").write_text(PROGRAM)
    (folder / "components").symlink_to(ROOT / "components")  # the project's layout: importable from the program's folder
    state = folder / "state"
    state.mkdir()
    engine = engine_tools()
    env = {**base_env(engine, folder / "home"), "PULUMI_BACKEND_URL": f"file://{state}", "PULUMI_CONFIG_PASSPHRASE": "e2e-only"}
    env.pop("PYTHONPATH", None)
    subprocess.run(
        [str(engine.pulumi), "stack", "init", "dev", "--non-interactive"], cwd=folder, env=env, check=True, capture_output=True, timeout=300
    )
    yield folder, env


def pulumi(project: tuple[Path, dict[str, str]], *args: str) -> subprocess.CompletedProcess[str]:
    folder, env = project
    result = subprocess.run(
        [str(engine_tools().pulumi), *args, "--non-interactive"], cwd=folder, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return result


def outputs(project: tuple[Path, dict[str, str]]) -> dict[str, str]:
    return json.loads(pulumi(project, "stack", "output", "--json", "--show-secrets").stdout)


def test_certificates_are_created_with_secret_keys_and_renewed_with_the_same_ca(project: tuple[Path, dict[str, str]]) -> None:
    pulumi(project, "up", "--yes", "--skip-preview")
    first = outputs(project)
    state = json.loads(pulumi(project, "stack", "export").stdout)
    (resource,) = [r for r in state["deployment"]["resources"] if r["type"] == "pulumi-python:dynamic:Resource"]
    for key in ("caKeyPem", "serverKeyPem", "clientKeyPem"):
        assert isinstance(resource["outputs"][key], dict) and SIG in resource["outputs"][key], key  # ciphertext in state
    assert "BEGIN PRIVATE KEY" not in json.dumps(state)
    pulumi(project, "preview", "--expect-no-changes")  # not due: nothing to do
    # Due now (renew 30 days before a 30-day end): the next `pulumi up` renews, the CA stays.
    pulumi(project, "config", "set", "renewBeforeDays", "30")
    preview = pulumi(project, "preview", "--diff").stdout
    assert "~" in preview or "update" in preview.lower(), preview[-2000:]
    pulumi(project, "up", "--yes", "--skip-preview")
    renewed = outputs(project)
    assert renewed["caPem"] == first["caPem"]
    assert renewed["clientCertPem"] != first["clientCertPem"] and renewed["clientKeyPem"] != first["clientKeyPem"]
    # Unchanged inputs, and still due by the clock: the drift job's `--expect-no-changes` reports the renewal.
    folder, env = project
    drift = subprocess.run(
        [str(engine_tools().pulumi), "preview", "--expect-no-changes", "--non-interactive"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert drift.returncode != 0 and "no changes were expected" in (drift.stdout + drift.stderr).lower(), (drift.stdout + drift.stderr)[
        -2000:
    ]
