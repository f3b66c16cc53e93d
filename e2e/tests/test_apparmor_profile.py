"""The confined mode's AppArmor profile, compiled by AppArmor's own parser at each node ABI it targets.

The parser checks syntax and rule semantics against the ABI (a `userns` rule does not exist in ABI 3.0);
it cannot show that a build passes under the profile: that needs a kernel running AppArmor (README
manual check). Parsers: e2e/apparmor.py (Debian's packages, signature-checked, in the tool cache).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from components.config.confinement import DEFAULT_APPARMOR_PROFILE, NODE_OS
from components.confined_profiles import apparmor_profile_text
from e2e.apparmor import PARSERS, ensure

ABIS = sorted({facts.apparmor_abi for facts in NODE_OS.values() if facts.apparmor_abi})


def test_every_abi_a_supported_node_os_uses_has_a_parser() -> None:
    assert ABIS == sorted(PARSERS) == ["3.0", "4.0"]


@pytest.mark.parametrize("abi", ABIS)
def test_the_profile_compiles_at_its_abi(tmp_path: Path, abi: str) -> None:
    profile = tmp_path / DEFAULT_APPARMOR_PROFILE
    profile.write_text(apparmor_profile_text(DEFAULT_APPARMOR_PROFILE, abi))
    result = ensure(PARSERS[abi]).compile(profile)
    assert result.returncode == 0, result.stderr


def test_the_abi_4_profile_does_not_compile_as_abi_3(tmp_path: Path) -> None:
    """Why there are two variants: 22.04's parser does not know the userns rule 24.04 needs."""
    profile = tmp_path / "p"
    text = apparmor_profile_text(DEFAULT_APPARMOR_PROFILE, "4.0").replace("abi <abi/4.0>,", "abi <abi/3.0>,")
    profile.write_text(text)
    userns_line = [line.strip() for line in text.splitlines()].index("userns,") + 1
    result = ensure(PARSERS["3.0"]).compile(profile)
    assert result.returncode != 0 and f"at line {userns_line}: syntax error" in result.stderr, result.stderr


@pytest.mark.parametrize("abi", ABIS)
def test_a_broken_profile_is_refused(tmp_path: Path, abi: str) -> None:
    profile = tmp_path / "p"
    profile.write_text(apparmor_profile_text(DEFAULT_APPARMOR_PROFILE, abi).replace("pivot_root,", "pivot_root"))
    assert ensure(PARSERS[abi]).compile(profile).returncode != 0
