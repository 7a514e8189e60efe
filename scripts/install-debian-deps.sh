#!/usr/bin/env bash
# Install the Debian packages named on the command line that are not installed yet.
# Runs apt-get only as root; otherwise prints what is missing and carries on (tests that need a
# missing tool skip with a clear reason).
set -euo pipefail
missing=()
for pkg in "$@"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "ccfo: missing Debian packages (run as root to install): ${missing[*]}" >&2
  exit 0
fi
echo "ccfo: installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null || echo "ccfo: apt-get update failed; trying the install anyway" >&2
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
  || echo "ccfo: could not install ${missing[*]}; tests that need them will skip" >&2
