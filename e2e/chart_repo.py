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
import datetime
import hashlib
import ipaddress
import ssl
import sys
import tarfile
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def issue_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1/localhost: (ca.pem, server.pem, server-key.pem)."""
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gitlab-buildkit-runner e2e CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = folder / "ca.pem", folder / "server.pem", folder / "server-key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return paths


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
    parser.add_argument("--certs", required=True, type=Path, help="folder with server.pem and server-key.pem")
    parser.add_argument("--site", required=True, type=Path, help="folder to serve (index.yaml is written there)")
    args = parser.parse_args(argv)
    write_index(args.charts, args.site)
    handler = partial(QuietHandler, directory=str(args.site))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.certs / "server.pem", args.certs / "server-key.pem")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print(f"https://127.0.0.1:{server.server_address[1]}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
