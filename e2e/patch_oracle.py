"""The patch oracle (e2e/patch_oracle/main.go, built into the tool cache): the runner's own pod_spec
decoding and Pod Security Admission, as one long-lived process on pipes (no port), stopped on exit."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

from e2e import tools


class PatchOracle:
    def __init__(self) -> None:
        binary = tools.ensure(["patch-oracle"])["patch-oracle"].binary("patch-oracle")
        self._process = subprocess.Popen([str(binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

    def effective_pod(
        self, spec: Mapping[str, Any], annotations: Mapping[str, str], patches: Sequence[Mapping[str, str]], level: str, version: str
    ) -> dict[str, Any]:
        """{"spec", "allowed", "forbidden"} of the pod the runner builds, or {"error"} when it would fail the job."""
        assert self._process.stdin is not None and self._process.stdout is not None
        request = {"spec": spec, "annotations": dict(annotations), "patches": list(patches), "level": level, "version": version}
        self._process.stdin.write(json.dumps(request) + "\n")
        self._process.stdin.flush()
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError(f"the patch oracle exited ({self._process.wait()})")
        return dict(json.loads(line))

    def close(self) -> None:
        if self._process.stdin:
            self._process.stdin.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def __enter__(self) -> PatchOracle:
        return self

    def __exit__(self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]) -> None:
        self.close()
