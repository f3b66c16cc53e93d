"""Render the real gitlab-runner chart offline with the values the stack produced (helm-python-sdk)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from .harness import ROOT

CHART_VERSION = "0.86.0"
CHART_SHA256 = "321a702c2425457b36e06871387291bdcf9acead8de27d7198abc66fa41d0401"  # shared/charts/PROVENANCE.md
CHART_REPO = "https://charts.gitlab.io"
_CACHE = ROOT / "build" / "charts"


class ChartUnavailable(RuntimeError):
    """The pinned chart archive is neither on disk nor downloadable (offline clone)."""


def chart_path() -> Path:
    """The pinned archive: $GITLAB_RUNNER_CHART, ../shared/charts, a previous download, or `helm pull`."""
    name = f"gitlab-runner-{CHART_VERSION}.tgz"
    candidates = [Path(p) for p in [os.environ.get("GITLAB_RUNNER_CHART", "")] if p]
    candidates += [ROOT.parent / "shared" / "charts" / name, _CACHE / name]
    for candidate in candidates:
        if candidate.is_file():
            return _verified(candidate)
    try:
        import helm_python

        _CACHE.mkdir(parents=True, exist_ok=True)
        helm_python.pull("gitlab-runner", repo_url=CHART_REPO, version=CHART_VERSION, destination=_CACHE)
    except Exception as exc:  # offline, or the repository is unreachable
        raise ChartUnavailable(
            f"{name} not found ({', '.join(map(str, candidates))}) and `helm pull` from {CHART_REPO} failed: {exc}"
        ) from exc
    return _verified(_CACHE / name)


def _verified(path: Path) -> Path:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != CHART_SHA256:
        raise ChartUnavailable(f"{path} has sha256 {digest}, expected {CHART_SHA256} (chart {CHART_VERSION})")
    return path


@cache
def _chart() -> Any:
    import helm_python

    return helm_python.Chart.load(str(chart_path()))


@dataclass(frozen=True)
class RenderedChart:
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


def render_chart(values: dict[str, Any], *, release: str, namespace: str) -> RenderedChart:
    templates = _chart().render(values, name=release, namespace=namespace, is_install=True)
    objects = []
    for path, text in sorted(templates.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                objects.append(doc)
    return RenderedChart(templates=templates, objects=objects)
