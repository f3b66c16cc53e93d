"""Render the real gitlab-runner chart offline, at the version the stack config names (helm-python-sdk).

Only archives whose sha256 is pinned in KNOWN_CHARTS are rendered: a version without a pinned digest
is refused with a clear error instead of silently rendering another version.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from .harness import ROOT

CHART_NAME = "gitlab-runner"
# version -> sha256 of the packaged chart, as published on charts.gitlab.io (`helm pull gitlab-runner
# --repo https://charts.gitlab.io --version <v>`; `sha256sum gitlab-runner-<v>.tgz`). Add a line to
# render another version; the program's default version must be here (tests/test_chart.py checks it).
KNOWN_CHARTS = {
    "0.86.0": "321a702c2425457b36e06871387291bdcf9acead8de27d7198abc66fa41d0401",
}
DEFAULT_REPOSITORY = "https://charts.gitlab.io"
_DOWNLOADS = ROOT / "build" / "charts"


class ChartUnavailable(RuntimeError):
    """The configured chart version cannot be rendered: no pinned digest, or no archive on disk or online."""


def chart_dirs() -> list[Path]:
    """Where archives are looked for: $GITLAB_RUNNER_CHARTS, the workspace's charts folder, earlier downloads."""
    dirs = [Path(p) for p in os.environ.get("GITLAB_RUNNER_CHARTS", "").split(os.pathsep) if p]
    return [*dirs, ROOT.parent / "shared" / "charts", _DOWNLOADS]


def chart_path(version: str, repository: str = DEFAULT_REPOSITORY) -> Path:
    """The verified archive of `version`: found on disk, else pulled from `repository`."""
    expected = KNOWN_CHARTS.get(version)
    if expected is None:
        raise ChartUnavailable(
            f"{CHART_NAME} chart {version} has no pinned sha256 in verify/chart.py KNOWN_CHARTS "
            f"(known: {', '.join(sorted(KNOWN_CHARTS))}); synth renders only verified archives. "
            f"Pull it (`helm pull {CHART_NAME} --repo {repository} --version {version}`), check it, and add its digest"
        )
    name = f"{CHART_NAME}-{version}.tgz"
    candidates = [d / name for d in chart_dirs()]
    for candidate in candidates:
        if candidate.is_file():
            return _verified(candidate, version, expected)
    try:
        import helm_python

        _DOWNLOADS.mkdir(parents=True, exist_ok=True)
        helm_python.pull(CHART_NAME, repo_url=repository, version=version, destination=_DOWNLOADS)
    except Exception as exc:  # offline, or the repository is unreachable
        raise ChartUnavailable(
            f"{name} not found ({', '.join(map(str, candidates))}) and `helm pull` from {repository} failed: {exc}"
        ) from exc
    return _verified(_DOWNLOADS / name, version, expected)


def _verified(path: Path, version: str, expected: str) -> Path:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != expected:
        raise ChartUnavailable(f"{path} has sha256 {digest}, expected {expected} (chart {version})")
    return path


@cache
def _chart(version: str, repository: str) -> Any:
    import helm_python

    return helm_python.Chart.load(str(chart_path(version, repository)))


@dataclass(frozen=True)
class RenderedChart:
    version: str
    templates: dict[str, str]  # template path -> manifest text
    objects: list[dict[str, Any]]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o.get("kind") == kind]

    def config_template_toml(self) -> str:
        """The runner config as the chart renders it (config.template.toml, after `tpl`)."""
        (configmap,) = self.of_kind("ConfigMap")
        return configmap["data"]["config.template.toml"]

    def global_config_toml(self) -> str:
        (configmap,) = self.of_kind("ConfigMap")
        return configmap["data"]["config.toml"]


def render_chart(
    values: dict[str, Any], *, release: str, namespace: str, version: str, repository: str = DEFAULT_REPOSITORY
) -> RenderedChart:
    templates = _chart(version, repository).render(values, name=release, namespace=namespace, is_install=True)
    objects = []
    for path, text in sorted(templates.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                objects.append(doc)
    return RenderedChart(version=version, templates=templates, objects=objects)


def render_release(inputs: dict[str, Any]) -> RenderedChart:
    """Render a recorded `helm.v3.Release`'s inputs: its values at its own chart version and repository."""
    repository = (inputs.get("repositoryOpts") or {}).get("repo") or DEFAULT_REPOSITORY
    return render_chart(
        inputs["values"], release=inputs["name"], namespace=inputs["namespace"], version=inputs["version"], repository=repository
    )
