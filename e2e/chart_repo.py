"""A Helm chart repository over HTTPS on 127.0.0.1, serving the pinned chart tarballs.

The stack's release names a repository URL (`runner.chartRepository`), and the Kubernetes provider's
Helm client fetches `index.yaml` and the chart from it, as from charts.gitlab.io. Here the tarballs
come from the workspace's shared/charts (or $GITLAB_RUNNER_CHARTS), the index is generated from
each chart's own Chart.yaml with its sha256 digest, and the server certificate is issued by a CA of
the run, which the engine's processes trust through SSL_CERT_FILE.
Ref: https://helm.sh/docs/topics/chart_repository/ (index.yaml format)

    python -m e2e.chart_repo --charts DIR --certs DIR   # prints its https URL on the first line
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import ssl
import sys
import tarfile
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml


def write_index(charts: Path, site: Path) -> list[str]:
    """Copy every chart tarball into `site` and write its index.yaml; returns 'name-version' of each."""
    site.mkdir(parents=True, exist_ok=True)
    entries: dict[str, list[dict[str, object]]] = {}
    for tarball in sorted(charts.glob("*.tgz")):
        with tarfile.open(tarball) as archive:
            member = next(m for m in archive.getmembers() if m.name.count("/") == 1 and m.name.endswith("/Chart.yaml"))
            extracted = archive.extractfile(member)
            assert extracted is not None
            chart = yaml.safe_load(extracted.read())
        data = tarball.read_bytes()
        (site / tarball.name).write_bytes(data)
        entries.setdefault(chart["name"], []).append(
            {**chart, "urls": [tarball.name], "digest": hashlib.sha256(data).hexdigest(), "created": "2026-01-01T00:00:00Z"}
        )
    if not entries:
        raise SystemExit(f"no chart tarballs (*.tgz) in {charts}")
    (site / "index.yaml").write_text(yaml.safe_dump({"apiVersion": "v1", "entries": entries, "generated": "2026-01-01T00:00:00Z"}))
    return [f"{name}-{entry['version']}" for name, versions in entries.items() for entry in versions]


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--charts", required=True, type=Path, help="folder of chart tarballs")
    parser.add_argument("--certs", required=True, type=Path, help="folder with cert.pem and key.pem (e2e/certs.py)")
    parser.add_argument("--site", required=True, type=Path, help="folder to serve (index.yaml is written there)")
    args = parser.parse_args(argv)
    write_index(args.charts, args.site)
    handler = partial(QuietHandler, directory=str(args.site))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.certs / "cert.pem", args.certs / "key.pem")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print(f"https://127.0.0.1:{server.server_address[1]}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
