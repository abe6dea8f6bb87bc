#!/usr/bin/env bash
# Installs everything MetaNet's tests and daemons need on Debian 12: the real peers from Debian
# (DHCP clients, nftables, slapd, NATS, Dovecot, Postfix, Chromium, Kea's perfdhcp, dnsmasq, Python msgpack)
# and the npm dependencies. Idempotent: packages already present are not fetched again.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(nftables conntrack iproute2 udhcpc busybox isc-dhcp-client dnsmasq kea-admin kea-dhcp4-server
  slapd ldap-utils nats-server dovecot-imapd dovecot-pop3d postfix chromium python3-msgpack swaks bind9-dnsutils iperf3 prometheus nmap)
PKGS+=(freeradius freeradius-utils)
PKGS+=(gcc libc6-dev) # bench:dhcp builds its perfdhcp receive-buffer shim (bench/native/rcvbuf.c)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: need root to install: ${missing[*]}" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  printf '%s\n' 'slapd slapd/no_configuration boolean true' \
    'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if [[ ! -d node_modules ]] || [[ package-lock.json -nt node_modules/.package-lock.json ]]; then
  npm ci --no-audit --no-fund
fi
