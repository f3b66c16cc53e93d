"""The benchmark's measures (not timings): dependency depth and resource growth per application."""

from __future__ import annotations

from types import SimpleNamespace

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
    # One application in its own project: its repository and lifecycle, the project's cache repository and
    # lifecycle, its push identity (component, policy, user, attachment, key) and its CI variables
    # (component and six variables).
    assert len(large.resources) - len(small.resources) == 39 * 16
    assert dependency_depth(small.resources) == dependency_depth(large.resources) == 5
