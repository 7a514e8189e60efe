#!/usr/bin/env bash
# Fetch the base IETF MIB modules (SNMPv2-SMI, SNMPv2-TC, SNMPv2-CONF, SNMPv2-MIB, ...) that smilint,
# snmptranslate, snmpwalk and snmptrapd need to read agents/mib/CCFO-MIB.txt. Debian 12 ships no IETF MIB
# text, so we take the copies inside the npm package `net-snmp` at set-up time. The text is never committed:
# it lands in a cache folder (default .cache/mibs) that ignores itself in git.
#
# Usage: scripts/fetch-mibs.sh [DEST]     prints DEST on success; exits 0 at once if DEST is already filled.
set -euo pipefail
cd "$(dirname "$0")/.."
dest="${1:-.cache/mibs}"
version="${CCFO_NET_SNMP_NPM_VERSION:-3.29.2}"
needed=(SNMPv2-SMI SNMPv2-TC SNMPv2-CONF SNMPv2-MIB)

complete() {
    local m
    for m in "${needed[@]}"; do [[ -s "$dest/$m" ]] || return 1; done
}

if complete; then
    echo "$dest"
    exit 0
fi
command -v npm >/dev/null || { echo "fetch-mibs: npm not found (apt-get install npm)" >&2; exit 3; }

mkdir -p "$dest"
root="$(dirname "$dest")"
[[ -e "$root/.gitignore" ]] || printf '*\n' > "$root/.gitignore"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "net-snmp@$version" >/dev/null && tar xzf net-snmp-*.tgz)
for f in "$work"/package/lib/mibs/*.mib; do
    name="$(basename "$f" .mib)"
    cp "$f" "$dest/.$name.tmp"
    mv "$dest/.$name.tmp" "$dest/$name"   # a reader never sees half a file
done
complete || { echo "fetch-mibs: npm package net-snmp@$version lacks a base MIB" >&2; exit 4; }
echo "$dest"
