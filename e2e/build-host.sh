#!/usr/bin/env bash
# Prepare a machine for the real-build tests (e2e/build_job.py), as root: Debian's uidmap (newuidmap/
# newgidmap, setuid), runc (the OCI runtime BuildKit's worker runs), wget (the template's existence
# checks), busybox-static (the base images), libcap2-bin (setcap: newuidmap with file capabilities, as
# in the rootless image), buildah (the benchmark's peer), and a subuid/subgid range
# for the build user (UID ${GBR_BUILD_UID:-1000}, like the rootless image's `user`).
set -euo pipefail
uid="${GBR_BUILD_UID:-1000}"
if [ "$(id -u)" -ne 0 ]; then
  echo "build-host: run as root (it installs Debian packages and edits /etc/subuid); as a user, ask for: uidmap runc wget busybox-static libcap2-bin buildah and a subuid range" >&2
  exit 1
fi
packages=(uidmap runc wget busybox-static libcap2-bin buildah)
missing=()
for p in "${packages[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
  echo ">> installing Debian packages: ${missing[*]}"
  # A fresh machine may have stale package lists: update once and retry when the first install fails.
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; }
fi
if ! getent passwd "$uid" >/dev/null; then
  echo ">> creating the build user gbr-build (UID $uid)"
  useradd --uid "$uid" --create-home --shell /bin/sh gbr-build
fi
name="$(getent passwd "$uid" | cut -d: -f1)"
for file in /etc/subuid /etc/subgid; do
  touch "$file"
  if ! grep -Eq "^(${name}|${uid}):[0-9]+:[0-9]+$" "$file"; then
    echo ">> $file: ${name}:100000:65536"
    echo "${name}:100000:65536" >> "$file"
  fi
done
for p in "${packages[@]}"; do printf '   %-15s %s\n' "$p" "$(dpkg-query -W -f='${Version}' "$p")"; done
