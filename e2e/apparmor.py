"""AppArmor's own parser, at the policy ABIs of the nodes the confined mode supports, to compile the stack's
AppArmor profile without loading it (this machine's kernel runs no AppArmor).

ABI 3.0 (Ubuntu 22.04 ships AppArmor 3.0.4): Debian bookworm's apparmor 3.0.8. ABI 4.0 (Ubuntu 24.04
ships 4.0.1): Debian trixie's apparmor 4.1.0, run with trixie's C library beside it (it needs
glibc 2.38). Packages come from deb.debian.org, checked the way apt checks them: the suite's InRelease
signature against the host's Debian archive keyring, the index's SHA-256 from it, the package's SHA-256
from the index. They are unpacked into the tool cache (outside the checkout), once.

    python -m e2e.apparmor   # fetch both, print each parser's version
"""

from __future__ import annotations

import hashlib
import lzma
import os
import re
import subprocess
import sys
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from e2e.tools import cache_root

MIRROR = "http://deb.debian.org/debian"
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
ARCH = "amd64"


@dataclass(frozen=True)
class Parser:
    abi: str
    suite: str
    version: str  # the apparmor package's exact version: the pin
    with_libc: bool  # unpack the suite's libc6 too and run through its loader

    @property
    def home(self) -> Path:
        return cache_root() / f"apparmor-{self.version}"

    @property
    def binary(self) -> Path:
        root = self.home / "root"  # bookworm installs it in /sbin, trixie (merged /usr) in /usr/sbin
        return next(
            (p for p in (root / "usr/sbin/apparmor_parser", root / "sbin/apparmor_parser") if p.is_file()), root / "sbin/apparmor_parser"
        )

    def command(self) -> list[str]:
        root = self.home / "root"
        parser = str(self.binary)
        if not self.with_libc:
            return [parser]
        libs = root / "usr/lib/x86_64-linux-gnu"
        return [str(libs / "ld-linux-x86-64.so.2"), "--library-path", str(libs), parser]

    @property
    def includes(self) -> Path:
        return self.home / "root/etc/apparmor.d"  # abi/, tunables/, abstractions/

    def compile(self, profile: Path) -> subprocess.CompletedProcess[str]:
        """Compile without loading (-Q), without cache (-K), to nowhere: syntax and semantics only."""
        return subprocess.run(
            [
                *self.command(),
                "--skip-kernel-load",
                "--skip-cache",
                "--skip-read-cache",
                "-I",
                str(self.includes),
                "-o",
                "/dev/null",
                str(profile),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )


PARSERS = {
    "3.0": Parser("3.0", "bookworm", "3.0.8-3", with_libc=False),
    "4.0": Parser("4.0", "trixie", "4.1.0-1", with_libc=True),
}


class FetchError(RuntimeError):
    pass


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=120) as response:
        return bytes(response.read())


def debian_index(suite: str) -> dict[tuple[str, str], dict[str, str]]:
    """{(package, version): fields} of the suite's main/binary-amd64 index, verified from a signed InRelease."""
    with tempfile.TemporaryDirectory() as tmp:
        release = Path(tmp) / "InRelease"
        release.write_bytes(_get(f"{MIRROR}/dists/{suite}/InRelease"))
        checked = subprocess.run(["gpgv", "--keyring", str(KEYRING), str(release)], capture_output=True, text=True)
        if checked.returncode != 0:
            raise FetchError(f"{suite} InRelease: bad signature against {KEYRING}: {checked.stderr.strip()[-300:]}")
        text = release.read_text()
    index = f"main/binary-{ARCH}/Packages.xz"
    match = re.search(rf"^ ([0-9a-f]{{64}}) +\d+ {re.escape(index)}$", text.split("SHA256:", 1)[1], re.MULTILINE)
    if not match:
        raise FetchError(f"{suite} InRelease lists no SHA256 for {index}")
    data = _get(f"{MIRROR}/dists/{suite}/{index}")
    if hashlib.sha256(data).hexdigest() != match.group(1):
        raise FetchError(f"{suite} {index}: SHA-256 differs from InRelease")
    found = {}
    for stanza in lzma.decompress(data).decode().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in stanza.splitlines() if ": " in line and not line.startswith(" "))
        if "Package" in fields:
            found[(fields["Package"], fields["Version"])] = fields
    return found


def debian_unpack(suite: str, index: dict[tuple[str, str], dict[str, str]], package: str, version: str | None, root: Path) -> str:
    candidates = [v for (p, v) in index if p == package and (version is None or v == version)]
    if not candidates:
        served = sorted(v for (p, v) in index if p == package)
        raise FetchError(
            f"{package} {version or '(any)'} is not in Debian {suite} (served: {served}); update the pin where it is set (e2e/apparmor.py, e2e/busybox.py)"
        )
    fields = index[(package, candidates[-1])]
    data = _get(f"{MIRROR}/{fields['Filename']}")
    if hashlib.sha256(data).hexdigest() != fields["SHA256"]:
        raise FetchError(f"{fields['Filename']}: SHA-256 differs from the {suite} index")
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(suffix=".deb") as deb:
        deb.write(data)
        deb.flush()
        subprocess.run(["dpkg-deb", "-x", deb.name, str(root)], check=True)
    return candidates[-1]


def ensure(parser: Parser) -> Parser:
    """Fetch and unpack the parser once; idempotent."""
    if parser.binary.is_file():
        return parser
    if not KEYRING.is_file():
        raise FetchError(f"{KEYRING} is missing (Debian's debian-archive-keyring package)")
    print(f">> fetching apparmor {parser.version} from Debian {parser.suite}", file=sys.stderr, flush=True)
    staging = parser.home.with_name(parser.home.name + ".partial")
    subprocess.run(["rm", "-rf", str(staging)], check=True)
    index = debian_index(parser.suite)
    debian_unpack(parser.suite, index, "apparmor", parser.version, staging / "root")
    if parser.with_libc:
        libc = debian_unpack(parser.suite, index, "libc6", None, staging / "root")
        (staging / "libc6.version").write_text(libc + "\n")
    os.replace(staging, parser.home)
    return parser


def version(parser: Parser) -> str:
    result = subprocess.run([*parser.command(), "--version"], capture_output=True, text=True, timeout=30)
    return (result.stdout or result.stderr).splitlines()[0]


def main() -> int:
    try:
        for parser in PARSERS.values():
            print(f"ABI {parser.abi}: {version(ensure(parser))}")
    except (FetchError, OSError, subprocess.CalledProcessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
