"""Warn when a ref the stack trusts is not protected in GitLab.

A GitLab ID token's `sub` names the project and ref but cannot say whether the ref is protected, so
the push roles (credentials.oidcSubjects) and the preview role (preview.refs) are only as safe as the
protection of the refs they trust: anyone who can push an unprotected trusted branch or tag can assume
the role. The drift job runs this with python-gitlab and prints a warning per unprotected ref.

    python -m cicd.check_protected_refs --stack prod       # GITLAB_TOKEN (read_api) from the environment
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import sys
from collections.abc import Iterable

from components.config import ConfigError, StackConfig, parse_config
from verify.harness import load_stack_file
from verify.stack_file import StackFileError


def trusted_refs(cfg: StackConfig) -> list[tuple[str, str, str]]:
    """(project path, 'branch'|'tag', ref) of every ref an IAM trust policy of the stack names."""
    refs = [(s.project_path, s.ref_type, s.ref) for s in cfg.credentials.oidc_subjects] if cfg.credentials.mode == "oidc" else []
    if cfg.preview.project_path:
        refs += [(cfg.preview.project_path, "branch", ref) for ref in cfg.preview.refs]
    return sorted(set(refs))


def unprotected(api_url: str, token: str, refs: Iterable[tuple[str, str, str]]) -> list[str]:
    """A warning per trusted ref that no protected-branch or protected-tag rule (wildcards too) covers."""
    import gitlab

    client = gitlab.Gitlab(api_url, private_token=token)
    warnings = []
    rules: dict[tuple[str, str], list[str]] = {}
    for project, ref_type, ref in refs:
        if (project, ref_type) not in rules:
            p = client.projects.get(project, lazy=True)
            manager = p.protectedbranches if ref_type == "branch" else p.protectedtags
            rules[(project, ref_type)] = [str(r.name) for r in manager.list(iterator=True)]
        if not any(fnmatch.fnmatchcase(ref, rule) for rule in rules[(project, ref_type)]):
            warnings.append(
                f"WARNING: {project} {ref_type} {ref!r} is trusted by an IAM role of this stack but is not protected in GitLab: "
                "anyone who can push it can assume the role. Protect it (Settings > Repository) or remove it from the stack config."
            )
    return warnings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", required=True)
    args = parser.parse_args(argv)
    try:
        cfg = parse_config(load_stack_file(args.stack), stack=args.stack)
    except (ConfigError, StackFileError) as exc:
        print(f"cannot read the {args.stack} stack config: {exc}", file=sys.stderr)
        return 2
    refs = trusted_refs(cfg)
    if not refs:
        print(f"{args.stack}: no IAM role trusts a GitLab ref")
        return 0
    token = os.environ.get("GITLAB_TOKEN", "")
    if not token:
        print("WARNING: GITLAB_TOKEN is not set: cannot check that the trusted refs are protected")
        return 0
    try:
        warnings = unprotected(f"{cfg.gitlab.url}", token, refs)
    except Exception as exc:  # the check warns, it never breaks the drift job
        print(f"WARNING: could not read the protected refs from GitLab ({exc.__class__.__name__}): check them by hand")
        return 0
    for warning in warnings:
        print(warning)
    print(f"{args.stack}: {len(refs) - len(warnings)} of {len(refs)} trusted refs are protected")
    return 0


if __name__ == "__main__":
    sys.exit(main())
