"""mTLS material of one project's warm BuildKit daemon: a CA of its own, the daemon's server certificate
and the one client certificate that project's build jobs present.

Why generated in the program (a Pulumi dynamic provider) and not by pulumi-tls or cert-manager:
pulumi-tls's provider is not obtainable in this workplace (its Go module is not served), so the engine
tier could not run it; cert-manager would be a cluster dependency the stack does not otherwise have,
and its issued keys would still have to reach GitLab's CI/CD variables through Pulumi. Here the keys
are created once by `create`, kept in the Pulumi state as secrets (the resource's outputs are marked
secret), and renewed by `diff`/`update` when the leaf certificates come within `renew_before_days` of
their end: the scheduled drift job then reports the pending renewal, and the next `pulumi up` issues new
server and client certificates signed by the same CA, so jobs that started with the old client
certificate keep connecting until it expires. A changed project or daemon name replaces everything,
CA included (a CA never signs for two daemons).

Per project, nothing shared: each daemon trusts only its own CA, so a client certificate of another
project is refused in the TLS handshake (BuildKit's server: tls.RequireAndVerifyClientCert with the CA
pool of --tlscacert).
Ref: https://github.com/moby/buildkit/blob/v0.25.1/cmd/buildkitd/main.go (serverCredentials)
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi.dynamic
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .marks import bounded_name

CA_VALIDITY_DAYS = 3650
SECRET_OUTPUTS = ["caKeyPem", "serverKeyPem", "clientKeyPem"]


@dataclass(frozen=True)
class Leaf:
    cert_pem: str
    key_pem: str


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()


def _name(role: str, project: str) -> x509.Name:
    """O=gitlab-buildkit-runner, CN=<role>-<project> within X.509's 64 characters (the DNS names are in the SAN)."""
    common_name = bounded_name(role, project, 64)
    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "gitlab-buildkit-runner"), x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    )


def new_ca(project: str, now: datetime.datetime) -> tuple[str, str]:
    """(CA certificate PEM, CA key PEM): a CA for one project's daemon only (path length 0)."""
    key = _key()
    name = _name("buildkitd-ca", project)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CA_VALIDITY_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode(), _pem_key(key)


def new_leaf(
    ca_cert_pem: str,
    ca_key_pem: str,
    role: str,
    project: str,
    *,
    server_names: list[str] | None,
    days: int,
    now: datetime.datetime,
) -> Leaf:
    """A server certificate (server_names: its DNS names) or a client certificate (server_names None)."""
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem.encode())
    ca_key = serialization.load_pem_private_key(ca_key_pem.encode(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = _key()
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server_names is not None else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(role, project))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(min(now + datetime.timedelta(days=days), ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, True, False, False, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if server_names is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in server_names]), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return Leaf(cert.public_bytes(serialization.Encoding.PEM).decode(), _pem_key(key))


def not_after(cert_pem: str) -> datetime.datetime:
    return x509.load_pem_x509_certificate(cert_pem.encode()).not_valid_after_utc


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def issue(props: dict[str, Any], ca: tuple[str, str] | None = None, now: datetime.datetime | None = None) -> dict[str, Any]:
    """Every output: a new CA unless one is given (renewal), then new server and client certificates."""
    now = now or _utcnow()
    ca_cert, ca_key = ca or new_ca(props["project"], now)
    days = int(props["validityDays"])
    server = new_leaf(ca_cert, ca_key, "buildkitd", props["project"], server_names=list(props["serverNames"]), days=days, now=now)
    client = new_leaf(ca_cert, ca_key, "build-jobs", props["project"], server_names=None, days=days, now=now)
    return {
        **props,
        "caPem": ca_cert,
        "caKeyPem": ca_key,
        "serverCertPem": server.cert_pem,
        "serverKeyPem": server.key_pem,
        "clientCertPem": client.cert_pem,
        "clientKeyPem": client.key_pem,
        "notAfter": min(not_after(server.cert_pem), not_after(client.cert_pem)).isoformat(),
    }


def due(outs: dict[str, Any], renew_before_days: int, now: datetime.datetime | None = None) -> bool:
    end = datetime.datetime.fromisoformat(outs["notAfter"])
    return (now or _utcnow()) >= end - datetime.timedelta(days=renew_before_days)


IDENTITY = ("project", "serverNames")  # a change of these replaces everything, CA included


class CertificatesProvider(pulumi.dynamic.ResourceProvider):
    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        return pulumi.dynamic.CreateResult(id_=f"buildkitd-tls-{props['project']}", outs=issue(props))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.DiffResult:
        replaces = [k for k in IDENTITY if olds.get(k) != news.get(k)]
        changed = [k for k in ("validityDays", "renewBeforeDays") if olds.get(k) != news.get(k)]
        renew = "notAfter" in olds and due(olds, int(news["renewBeforeDays"]))
        return pulumi.dynamic.DiffResult(changes=bool(replaces or changed or renew), replaces=replaces, delete_before_replace=False)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.UpdateResult:
        # Same CA, new leaves: clients holding the previous client certificate keep working until it expires.
        return pulumi.dynamic.UpdateResult(outs=issue(news, ca=(olds["caPem"], olds["caKeyPem"])))

    def read(self, id_: str, props: dict[str, Any]) -> pulumi.dynamic.ReadResult:
        return pulumi.dynamic.ReadResult(id_=id_, outs=props)  # nothing outside the state to read back


class BuilderCertificates(pulumi.dynamic.Resource):
    """Outputs (camelCase): caPem, serverCertPem, serverKeyPem, clientCertPem, clientKeyPem, notAfter; keys secret."""

    ca_pem: pulumi.Output[str]
    server_cert_pem: pulumi.Output[str]
    server_key_pem: pulumi.Output[str]
    client_cert_pem: pulumi.Output[str]
    client_key_pem: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        project: str,
        server_names: list[str],
        validity_days: int,
        renew_before_days: int,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = {
            "project": project,
            "serverNames": server_names,
            "validityDays": validity_days,
            "renewBeforeDays": renew_before_days,
            "caPem": None,
            "caKeyPem": None,
            "serverCertPem": None,
            "serverKeyPem": None,
            "clientCertPem": None,
            "clientKeyPem": None,
            "notAfter": None,
        }
        secret = pulumi.ResourceOptions(additional_secret_outputs=SECRET_OUTPUTS)
        super().__init__(CertificatesProvider(), name, props, pulumi.ResourceOptions.merge(opts, secret))
        self.ca_pem = self.caPem  # type: ignore[attr-defined]
        self.server_cert_pem = self.serverCertPem  # type: ignore[attr-defined]
        self.server_key_pem = self.serverKeyPem  # type: ignore[attr-defined]
        self.client_cert_pem = self.clientCertPem  # type: ignore[attr-defined]
        self.client_key_pem = self.clientKeyPem  # type: ignore[attr-defined]
