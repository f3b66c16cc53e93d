"""gitlab-ci-local, pinned, in the tool cache: the pipeline evaluator `make test` runs (verify/pipeline.py).

npm installs it from `verify/gitlab-ci-local/package-lock.json` (exact versions and integrity hashes)
into `~/.cache/gitlab-buildkit-runner/tools/gitlab-ci-local-<version>/`, never globally; `make venv`
calls this. 4.73.0 is the newest release that runs on Node.js 20 (4.74.0 and later call
`Set.prototype.union`, Node.js 22). gitlab-ci-local copies the work tree with `rsync` before every
run, even with the shell executor; where the machine has none, Debian bookworm's rsync and libpopt0
are fetched like the other Debian parts (signed InRelease, index and package SHA-256) into the same
folder. With internet access: `npm ci` in that folder, and `apt-get install rsync`.

    python -m verify.gitlab_ci_local          # install (idempotent), print the version
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "verify" / "gitlab-ci-local"
VERSION = "4.73.0"
RSYNC = ("rsync", "3.2.7-1+deb12u6", "bookworm")  # package, version, suite
POPT = ("libpopt0", "1.19+dfsg-1", "bookworm")


class InstallError(RuntimeError):
    pass


def cache_root() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "gitlab-buildkit-runner" / "tools"


def home() -> Path:
    return cache_root() / f"gitlab-ci-local-{VERSION}"


def binary() -> Path:
    return home() / "node_modules" / ".bin" / "gitlab-ci-local"


def path_dirs() -> list[str]:
    """Folders to put before PATH when running it (the fetched rsync, if any)."""
    fetched = home() / "rsync" / "bin"
    return [str(fetched)] if (fetched / "rsync").exists() else []


def installed() -> bool:
    lock = home() / "package-lock.json"
    return binary().exists() and lock.exists() and lock.read_bytes() == (PACKAGE / "package-lock.json").read_bytes()


def _fetch_rsync() -> None:
    from e2e.apparmor import debian_index, debian_unpack

    target = home() / "rsync"
    staging = target.with_name("rsync.partial")
    shutil.rmtree(staging, ignore_errors=True)
    indexes: dict[str, dict] = {}
    for package, version, suite in (RSYNC, POPT):
        if suite not in indexes:
            indexes[suite] = debian_index(suite)
        debian_unpack(suite, indexes[suite], package, version, staging / "root")
    (staging / "bin").mkdir()
    wrapper = staging / "bin" / "rsync"
    # Relative to the wrapper, so the folder can move; the machine's own C library and the other libraries.
    wrapper.write_text(
        '#!/bin/sh\nhere=$(dirname "$0")\n'
        'LD_LIBRARY_PATH="$here/../root/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "$here/../root/usr/bin/rsync" "$@"\n'
    )
    wrapper.chmod(0o755)
    check = subprocess.run([str(wrapper), "--version"], capture_output=True, text=True, timeout=30)
    if check.returncode != 0:
        raise InstallError(f"the fetched rsync does not run here ({check.stderr.strip()[-200:]}): install rsync (apt-get install rsync)")
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staging, target)


def ensure() -> Path:
    """Install if missing or if the lock file changed; returns the binary."""
    if not installed():
        npm = shutil.which("npm")
        if npm is None:
            raise InstallError("npm is not installed: it installs gitlab-ci-local for the pipeline tests (apt-get install nodejs npm)")
        print(
            f">> installing gitlab-ci-local {VERSION} into {home()} (npm ci, pinned by verify/gitlab-ci-local/package-lock.json)",
            file=sys.stderr,
            flush=True,
        )
        home().mkdir(parents=True, exist_ok=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copyfile(PACKAGE / name, home() / name)
        result = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"],
            cwd=home(),
            capture_output=True,
            text=True,
            timeout=600,
        )
        if result.returncode != 0 or not binary().exists():
            (home() / "package-lock.json").unlink(missing_ok=True)
            raise InstallError(f"npm ci for gitlab-ci-local {VERSION} failed: {result.stderr.strip()[-600:]}")
    if shutil.which("rsync") is None and not path_dirs():
        print(f">> fetching rsync ({RSYNC[1]}) from Debian for gitlab-ci-local", file=sys.stderr, flush=True)
        _fetch_rsync()
    return binary()


def version() -> str:
    env = {**os.environ, "PATH": os.pathsep.join([*path_dirs(), os.environ.get("PATH", "")])}
    return subprocess.run([str(ensure()), "--version"], capture_output=True, text=True, timeout=60, env=env).stdout.strip()


def main() -> int:
    try:
        print(f"gitlab-ci-local {version()} at {binary()}")
    except InstallError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
