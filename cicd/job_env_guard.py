"""First step of every Pulumi job: refuse to run when a CI/CD variable carries a tool's own name.

A project, group or instance variable named KUBECONFIG, GITLAB_TOKEN or AWS_* reaches every job whose
environment its scope matches and beats the job's own `variables:` (GitLab's precedence), so a
credential meant for one job would silently reach another, or the preview would run with the deploy
kubeconfig. The jobs set those names themselves, from the variables in cicd/pipeline_variables.py,
after this check. Standard library only: it runs before the job installs anything.

    python3 -m cicd.job_env_guard          # exit 1, naming each variable and what replaces it
"""

from __future__ import annotations

import os
import sys

from cicd.pipeline_variables import RENAMED, TOOL_VARIABLES


def problems(environ: dict[str, str]) -> list[str]:
    found = []
    for name in TOOL_VARIABLES:
        if name in environ:
            instead = RENAMED.get(name, "a name of its own, exported by the job's script")
            found.append(
                f"ERROR: the CI/CD variable {name} reaches this job ({os.environ.get('CI_JOB_NAME', 'job')}, environment "
                f"'{environ.get('CI_ENVIRONMENT_NAME', '')}'). Tools read it directly and a project variable overrides the "
                f"job's own value, so it must not be a CI/CD variable: delete it (Settings > CI/CD > Variables, also the group's) "
                f"and use {instead} (UPGRADE.md, 2.0.0)."
            )
    return found


def main() -> int:
    found = problems(dict(os.environ))
    for line in found:
        print(line, file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
