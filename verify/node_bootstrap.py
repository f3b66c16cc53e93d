"""Print the confined mode's node bootstrap for a stack's config, before `pulumi up` (the nodes need the
profiles before the runner references them; the stack output `confinedProfiles` has the same script).

    python -m verify.node_bootstrap --stack prod > confined-profiles.sh
    python -m verify.node_bootstrap --config-file Pulumi.prod.yaml
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from components.config import ConfigError, parse_config
from components.confined_profiles import node_bootstrap_script
from verify.harness import ROOT, load_config_file
from verify.stack_file import StackFileError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--stack", help="a stack name: reads Pulumi.<stack>.yaml")
    source.add_argument("--config-file", type=Path, help="a Pulumi.<stack>.yaml-shaped file")
    args = parser.parse_args(argv)
    path = args.config_file or ROOT / f"Pulumi.{args.stack}.yaml"
    try:
        config = parse_config(load_config_file(path))
    except (ConfigError, StackFileError, OSError) as exc:
        print(f"error: {path}: {exc}", file=sys.stderr)
        return 1
    names = config.runner.confined_profile_names()
    if names is None:
        print(
            f"error: {path}: runner.jobSecurityMode is {config.runner.job_security_mode!r}; only 'confined' uses node profiles",
            file=sys.stderr,
        )
        return 1
    sys.stdout.write(node_bootstrap_script(names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
