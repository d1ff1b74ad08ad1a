#!/usr/bin/env bash
# Install the real components the tests drive, when they are missing and we can
# (root on Debian/Ubuntu). Without root, say what is missing: the tests skip
# those parts, except under CI=true, where they fail.
set -euo pipefail

missing=()
have() { command -v "$1" >/dev/null 2>&1; }
have_pg() { have initdb || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; }

have_pg || missing+=(postgresql)
have npm || missing+=(nodejs npm)
# the browser tests drive Debian's Chromium (never a Playwright download)
[ -x /usr/bin/chromium ] || missing+=(chromium)
# the Docker tests: Debian's daemon, and debootstrap for the local base image
# (there may be no container registry to pull one from)
have dockerd || [ -x /usr/sbin/dockerd ] || missing+=(docker.io)
have debootstrap || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
# HTTPS: Caddy is Labspace's TLS front (hub.tls); pebble is Let's Encrypt's ACME
# test server, which the HTTPS tests issue certificates from
have caddy || missing+=(caddy)
have pebble || missing+=(pebble)
# systemd-analyze: the service tests verify the units `labspace install-service` writes
have systemd-analyze || missing+=(systemd)
# certutil: the HTTPS browser test trusts pebble's root in Chromium's NSS database
have certutil || missing+=(libnss3-tools)

# One Docker daemon, started here when none runs: no bridge network and no
# iptables rules, since every Labspace container uses the host's network.
start_dockerd() {
  local log=${LABSPACE_DOCKERD_LOG:-/var/log/labspace-dockerd.log}
  if ! have docker || docker info >/dev/null 2>&1; then
    return 0
  fi
  if [ "$(id -u)" -ne 0 ] || ! command -v dockerd >/dev/null 2>&1; then
    echo "provision: no Docker daemon answers; start one (as root:" \
         "dockerd --bridge=none --iptables=false) or the Docker tests are skipped" >&2
    return 0
  fi
  if pgrep -x dockerd >/dev/null; then
    echo "provision: a dockerd runs but does not answer; see its log" >&2
    return 0
  fi
  echo "provision: starting dockerd (no bridge network; log: $log)"
  setsid nohup dockerd --bridge=none --iptables=false </dev/null >"$log" 2>&1 &
  echo $! >/run/labspace-dockerd.pid
  for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  echo "provision: dockerd did not answer within 30s (see $log)" >&2
}

if [ ${#missing[@]} -eq 0 ]; then
  start_dockerd
  exit 0
fi
if [ "$(id -u)" -eq 0 ] && have apt-get; then
  echo "provision: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # no package may start its service while installing (Debian's docker.io would
  # start a daemon with a bridge network, postgresql a system cluster)
  policy=/usr/sbin/policy-rc.d
  own_policy=false
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && own_policy=true
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if $own_policy; then rm -f "$policy"; fi
  # Debian starts a system cluster on install; the tests run their own
  if have systemctl; then systemctl disable --now postgresql >/dev/null 2>&1 || true; fi
  # ...and its Docker daemon with a bridge network; start_dockerd runs one without
  if [[ " ${missing[*]} " == *" caddy "* ]] && have systemctl; then
    systemctl disable --now caddy.service >/dev/null 2>&1 || true
  fi
  if [[ " ${missing[*]} " == *" docker.io "* ]] && have systemctl; then
    systemctl disable --now docker.socket docker.service >/dev/null 2>&1 || true
  fi
else
  echo "provision: missing ${missing[*]}; install them (apt install ${missing[*]})" \
       "or the tests that need them are skipped (and fail under CI=true)" >&2
fi
start_dockerd
