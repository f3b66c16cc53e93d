"""The benchmark's measures (not timings): dependency depth and resource growth per application."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from bench.worker import dependency_depth, fleet_config
from verify.harness import run_program


def reg(urn: str, deps: tuple[str, ...] = (), parent: str = "stack", custom: bool = True, provider: str = "") -> SimpleNamespace:
    return SimpleNamespace(urn=urn, dependencies=list(deps), parent=parent, custom=custom, provider=provider)


def test_depth_counts_the_longest_chain_and_expands_components() -> None:
    graph = [
        reg("p"),
        reg("a", provider="p::id"),
        reg("comp", custom=False),
        reg("b", ("a",), parent="comp"),
        reg("c", ("a",), parent="comp"),
        reg("d", ("comp",)),  # depends on everything under the component
    ]
    assert dependency_depth(graph) == 4  # p -> a -> b -> d


def test_adding_applications_adds_width_not_depth() -> None:
    small = run_program(fleet_config("dev", 1), stack="dev")
    large = run_program(fleet_config("dev", 40), stack="dev")
    # One application in its own project: the ApplicationProject component, its repository and lifecycle,
    # the project's cache repository and lifecycle, its push identity (component, policy, user, attachment,
    # key) and its CI variables (component and six variables).
    assert len(large.resources) - len(small.resources) == 39 * 17
    assert dependency_depth(small.resources) == dependency_depth(large.resources) == 5


def test_bench_build_refuses_unknown_apps_and_repetitions_before_touching_the_host(capsys: pytest.CaptureFixture[str]) -> None:
    from bench.build import main as bench_build

    assert bench_build(["--apps", "go-service,nope"]) == 2
    assert "--apps must name" in capsys.readouterr().err
    assert bench_build(["--reps", "0"]) == 2
    assert "--reps must be >= 1" in capsys.readouterr().err


def test_every_fixture_app_the_build_bench_knows_exists() -> None:
    from bench.build import APPS, DEFAULT_APPS
    from e2e.build_job import APPS as FIXTURES

    assert set(DEFAULT_APPS) <= set(APPS)
    assert all((FIXTURES / app / "Dockerfile").is_file() for app in APPS)
