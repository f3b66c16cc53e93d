from __future__ import annotations

import copy
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BASE_CONFIG: dict[str, Any] = {
    "environment": "dev",
    "runner": {"scope": {"type": "project_type", "projectId": 42}, "tags": ["buildkit", "dev"]},
    "registry": {"region": "eu-west-1", "applications": ["web", "api"]},
    "gitlab": {"url": "https://gitlab.example.com"},
    "network": {"policyEngine": "calico"},
}


def app(name: str, project: str | None = None) -> dict[str, str]:
    """An application entry; its project defaults to acme/<name> (one project per application)."""
    return {"name": name, "projectPath": project or f"acme/{name}"}


def make_config(*, raw_applications: bool = False, **overrides: Any) -> dict[str, Any]:
    """A valid raw config with nested overrides: make_config(runner={"concurrent": 2}).

    Application names given as plain strings become {name, projectPath: acme/<name>} unless
    raw_applications (to test the config's own handling of that shape)."""
    cfg = copy.deepcopy(BASE_CONFIG)
    environment = overrides.get("environment")
    if isinstance(environment, str) and "tags" not in (overrides.get("runner") or {}):
        cfg["runner"]["tags"] = ["buildkit", environment]  # the runner carries its environment's tag
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    registry = cfg.get("registry")
    if not raw_applications and isinstance(registry, dict) and isinstance(registry.get("applications"), list):
        registry["applications"] = [app(a) if isinstance(a, str) else a for a in registry["applications"]]
    return cfg


@pytest.fixture
def raw_config() -> dict[str, Any]:
    return make_config()


def runner_config_of(cfg: Any, job_service_account: str = "buildkit-job") -> Any:
    """The typed config.toml the stack builds for a parsed StackConfig (what GitlabRunner passes)."""
    from components.runner_config import build_runner_config

    return build_runner_config(
        cfg.runner,
        environment=cfg.environment,
        job_namespace=cfg.kubernetes.job_namespace,
        job_service_account=job_service_account,
        automount_service_account_token=cfg.kubernetes.job_automount_service_account_token,
    )


@pytest.fixture(scope="module")
def pack() -> Iterator[Any]:
    """The policy pack over its real gRPC protocol, one process per test module (stopped after it)."""
    from verify.policy_client import PolicyPack

    with PolicyPack() as running:
        yield running
