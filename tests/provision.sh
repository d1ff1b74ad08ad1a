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

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ] && have apt-get; then
  echo "provision: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian starts a system cluster on install; the tests run their own
  if have systemctl; then systemctl disable --now postgresql >/dev/null 2>&1 || true; fi
else
  echo "provision: missing ${missing[*]}; install them (apt install ${missing[*]})" \
       "or the tests that need them are skipped (and fail under CI=true)" >&2
fi
