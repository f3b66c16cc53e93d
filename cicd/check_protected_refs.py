"""Trusted refs must be protected; protected branches must be trusted by the preview role.

An IAM trust policy can test only the ID token's `aud` and `sub` (project, ref type, ref): GitLab's
`ref_protected` claim is in the token but STS offers no condition key for it. So the push roles
(credentials.oidcSubjects) and the preview role (preview.refs) are only as safe as the protection of
the refs they trust: anyone who can push an unprotected trusted branch or tag can assume the role. A
trusted pattern ('v*', 'infra/*') is safe only when a protected rule covers every ref it matches.
And the preview job runs on every protected branch but the default one, the build template on every
protected ref: a protected branch or tag the matching role does not trust gets jobs that STS refuses
(warned about, never an error: it breaks jobs, not isolation).

    python -m cicd.check_protected_refs --stack prod             # drift job: warnings only
    python -m cicd.check_protected_refs --stack prod --require   # deploy job: exit 1 on an unprotected trusted ref

GITLAB_TOKEN (read_api is enough) from the environment.
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


def _glob(pattern: str) -> str:
    """A GitLab wildcard ('*' any run of characters, '/' included; nothing else special) for fnmatch."""
    return pattern.replace("[", "[[]").replace("?", "[?]")


def covered(ref: str, rules: Iterable[str]) -> bool:
    """Every ref `ref` matches (its '*' a wildcard, as in the IAM trust) is protected by one rule: the
    rule matches `ref`'s text with each of its '*' read as a literal character, so whatever a '*' of
    `ref` stands for, the rule's own '*' absorbs it (sound; a pattern covered only by a union of rules
    is reported, never passed).
    Ref: https://docs.gitlab.com/user/project/repository/branches/protected/#protect-multiple-branches-with-wildcard-rules"""
    return any(fnmatch.fnmatchcase(ref, _glob(rule)) for rule in rules)


class ProtectedRules:
    """The protected-branch and protected-tag rule names of GitLab projects, each project and kind read once
    (the three checks below share one reader)."""

    def __init__(self, api_url: str, token: str) -> None:
        import gitlab

        self._client = gitlab.Gitlab(api_url, private_token=token)
        self._read: dict[tuple[str, str], list[str]] = {}

    def of(self, project: str, ref_type: str) -> list[str]:
        if (project, ref_type) not in self._read:
            p = self._client.projects.get(project, lazy=True)
            manager = p.protectedbranches if ref_type == "branch" else p.protectedtags
            self._read[(project, ref_type)] = [str(r.name) for r in manager.list(iterator=True)]
        return self._read[(project, ref_type)]


def unprotected(rules: ProtectedRules, refs: Iterable[tuple[str, str, str]]) -> list[str]:
    """A warning per trusted ref (or pattern) that no protected-branch or protected-tag rule covers."""
    warnings = []
    for project, ref_type, ref in refs:
        if not covered(ref, rules.of(project, ref_type)):
            what = "pattern" if "*" in ref else ref_type
            warnings.append(
                f"WARNING: {project} {what} {ref!r} is trusted by an IAM role of this stack but is not protected in GitLab "
                f"(no protected-{ref_type} rule covers it): anyone who can push it can assume the role. Protect it "
                "(Settings > Repository) or remove it from the stack config."
            )
    return warnings


def untrusted_previews(rules: ProtectedRules, cfg: StackConfig) -> list[str]:
    """A warning per protected branch rule of preview.projectPath (but the default branch) the preview role does not trust."""
    if not cfg.preview.project_path or not cfg.preview.refs:
        return []
    return [
        f"WARNING: protected branch {rule!r} of {cfg.preview.project_path} runs the preview job, but preview.refs "
        f"{cfg.preview.refs} does not cover it: STS refuses its previews. Add it (or a wildcard covering it) to preview.refs."
        for rule in rules.of(cfg.preview.project_path, "branch")
        if rule != cfg.preview.default_branch and not covered(rule, cfg.preview.refs)
    ]


def untrusted_builds(rules: ProtectedRules, cfg: StackConfig) -> list[str]:
    """oidc mode: a warning per protected branch or tag rule of an application project that its push role does
    not trust. The build template's default rules run on every protected ref, so such builds fail at STS."""
    if cfg.credentials.mode != "oidc":
        return []
    warnings = []
    for project in cfg.registry.projects():
        for ref_type in ("branch", "tag"):
            trusted = [s.ref for s in cfg.credentials.oidc_subjects if s.project_path == project and s.ref_type == ref_type]
            for rule in rules.of(project, ref_type):
                if not covered(rule, trusted):
                    warnings.append(
                        f"WARNING: protected {ref_type} {rule!r} of {project} runs the build template (its default rules "
                        f"take every protected ref), but the project's push role trusts only {ref_type}es {trusted}: STS "
                        "refuses those builds. Add it to credentials.oidcSubjects, or narrow the template's `rules` input."
                    )
    return warnings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", required=True)
    parser.add_argument("--require", action="store_true", help="exit 1 when a trusted ref is not protected, or the check cannot run")
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
    fail = 1 if args.require else 0
    level = "ERROR" if fail else "WARNING"  # the deploy gate refuses; the drift check warns
    token = os.environ.get("GITLAB_TOKEN", "")
    if not token:
        print(f"{level}: GITLAB_TOKEN is not set: cannot check that the trusted refs are protected")
        return fail
    try:
        rules = ProtectedRules(f"{cfg.gitlab.url}", token)
        warnings = unprotected(rules, refs)
        notes = untrusted_previews(rules, cfg) + untrusted_builds(rules, cfg)
    except Exception as exc:
        print(f"{level}: could not read the protected refs from GitLab ({exc.__class__.__name__}): check them by hand")
        return fail
    for line in warnings + notes:
        print(line.replace("WARNING", "ERROR", 1) if fail and line in warnings else line)
    print(f"{args.stack}: {len(refs) - len(warnings)} of {len(refs)} trusted refs are protected")
    return fail if warnings else 0


if __name__ == "__main__":
    sys.exit(main())
