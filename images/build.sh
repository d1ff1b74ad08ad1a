#!/usr/bin/env bash
# Build Labspace's images, each only when its inputs changed:
#
#   images/build.sh [base|workspace|hub|all]     (default: all)
#
# - base       labspace/base:bookworm from Debian packages (images/base/build.sh),
#              only when absent and only when BASE_IMAGE is that image;
# - workspace  labspace/workspace:latest (images/workspace/Dockerfile);
# - hub        labspace/hub:latest (images/hub/Dockerfile).
#
# An image is rebuilt when the hash of its inputs (its folder, Labspace's source,
# the npm lockfile, the CA certificates, the base image and the pinned versions)
# differs from the one in its `org.labspace.inputs` label. The build context is
# the image's folder plus two git-ignored folders staged here: dist/ (the
# Labspace wheel; the npm lockfile for the hub) and ca-certificates/.
#
# Environment: BASE_IMAGE (default labspace/base:bookworm; python:3.11-slim-bookworm
# needs a registry), WORKSPACE_IMAGE, HUB_IMAGE, CA_CERTS_DIR (default
# /usr/local/share/ca-certificates; empty: none), PYTHON (for the wheel and the
# versions; default .venv/bin/python), FORCE=1 (rebuild).
set -euo pipefail
cd "$(dirname "$0")/.."

BASE_IMAGE=${BASE_IMAGE:-labspace/base:bookworm}
WORKSPACE_IMAGE=${WORKSPACE_IMAGE:-labspace/workspace:latest}
HUB_IMAGE=${HUB_IMAGE:-labspace/hub:latest}
CA_CERTS_DIR=${CA_CERTS_DIR-/usr/local/share/ca-certificates}
PYTHON=${PYTHON:-.venv/bin/python}
LABEL=org.labspace.inputs
LOGS=build/images
mkdir -p "$LOGS"

log() { echo "images: $*"; }
die() { echo "images: $*" >&2; exit 1; }

docker info >/dev/null 2>&1 || die "no Docker daemon answers (start dockerd; tests/provision.sh does as root)"
[ -x "$PYTHON" ] || PYTHON=python3

# the versions the hub runs: a workspace must match them
versions() {
  "$PYTHON" - <<'EOF'
from importlib.metadata import PackageNotFoundError, version
for arg, dist in [("JUPYTERHUB_VERSION", "jupyterhub"), ("JUPYTERLAB_VERSION", "jupyterlab"),
                  ("JUPYTER_SERVER_PROXY_VERSION", "jupyter-server-proxy")]:
    try:
        print(f"{arg}={version(dist)}")
    except PackageNotFoundError:
        pass  # the Dockerfile's default
EOF
}
mapfile -t VERSIONS < <(versions)

ca_files() {
  [ -n "$CA_CERTS_DIR" ] && [ -d "$CA_CERTS_DIR" ] || return 0
  find "$CA_CERTS_DIR" -maxdepth 1 -name '*.crt' -type f | sort
}

# files whose content makes an image: $1 = the image's folder
inputs() {
  {
    find "images/$1" \( -name dist -o -name ca-certificates \) -prune -o -type f -print
    find labspace spawners services extensions -name __pycache__ -prune -o -type f -print
    echo pyproject.toml
    if [ "$1" = hub ]; then printf '%s\n' package.json package-lock.json; fi
    ca_files
  } | LC_ALL=C sort
}

input_hash() {
  local base_id
  base_id=$(docker image inspect -f '{{.Id}}' "$BASE_IMAGE" 2>/dev/null || echo "$BASE_IMAGE")
  {
    inputs "$1" | while read -r f; do sha256sum "$f"; done
    echo "base=$base_id"
    printf '%s\n' "${VERSIONS[@]}"
  } | sha256sum | cut -c1-32
}

WHEEL_DIR=""
cleanup() {
  [ -n "$WHEEL_DIR" ] && rm -rf "$WHEEL_DIR"
  rm -rf images/workspace/dist images/workspace/ca-certificates \
         images/hub/dist images/hub/ca-certificates
}
trap cleanup EXIT

# the Labspace wheel, built once per run into $WHEEL_DIR
ensure_wheel() {
  [ -z "$WHEEL_DIR" ] || return 0
  WHEEL_DIR=$(mktemp -d)
  local cmd=("$PYTHON" -m build --wheel --outdir "$WHEEL_DIR" .)
  "$PYTHON" -c 'import build' 2>/dev/null || cmd=("$PYTHON" -m pip wheel -q --no-deps -w "$WHEEL_DIR" .)
  "${cmd[@]}" >"$LOGS/wheel.log" 2>&1 ||
    { tail -n 20 "$LOGS/wheel.log" >&2; die "building the Labspace wheel failed (see $LOGS/wheel.log)"; }
}

# Labspace's dependencies from the wheel's metadata, with extras $2 (a,b,c):
# installed in a layer of their own, which a change to Labspace's code keeps
requirements() {
  "$PYTHON" - "$1" "$2" <<'EOF'
import sys
import zipfile

from packaging.requirements import Requirement

wheel, extras = sys.argv[1], [e for e in sys.argv[2].split(",") if e]
with zipfile.ZipFile(wheel) as z:
    meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
    lines = z.read(meta).decode().splitlines()
for line in lines:
    if not line.startswith("Requires-Dist:"):
        continue
    req = Requirement(line.partition(":")[2].strip())
    if req.name == "labspace":
        continue
    if req.marker and not any(req.marker.evaluate({"extra": e}) for e in ["", *extras]):
        continue
    req.marker = None
    print(req)
EOF
}

# stage dist/ and ca-certificates/ into images/$1 (both git-ignored)
stage() {
  local dir=images/$1 extras=""
  rm -rf "$dir/dist" "$dir/ca-certificates"
  mkdir -p "$dir/dist" "$dir/ca-certificates"
  ensure_wheel
  cp "$WHEEL_DIR"/labspace-*.whl "$dir/dist/"
  if [ "$1" = hub ]; then
    extras=postgres,docker,kubernetes
    cp package.json package-lock.json "$dir/dist/"
  fi
  requirements "$WHEEL_DIR"/labspace-*.whl "$extras" | LC_ALL=C sort >"$dir/dist/requirements.txt"
  ca_files | while read -r f; do cp "$f" "$dir/ca-certificates/"; done
}

build_base() {
  if [ "$BASE_IMAGE" = labspace/base:bookworm ]; then
    IMAGE=$BASE_IMAGE images/base/build.sh
  else
    log "base: using $BASE_IMAGE"
  fi
}

build_image() { # name tag
  local name=$1 tag=$2 hash current old start
  hash=$(input_hash "$name")
  current=$(docker image inspect -f "{{index .Config.Labels \"$LABEL\"}}" "$tag" 2>/dev/null || true)
  if [ -z "${FORCE:-}" ] && [ "$current" = "$hash" ]; then
    log "$name: $tag is up to date"
    return
  fi
  old=$(docker image inspect -f '{{.Id}}' "$tag" 2>/dev/null || true)
  stage "$name"
  local args=(--network host --label "$LABEL=$hash" --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$tag")
  for v in "${VERSIONS[@]}"; do  # those the Dockerfile declares
    if grep -q "^ARG ${v%%=*}=" "images/$name/Dockerfile"; then args+=(--build-arg "$v"); fi
  done
  log "$name: building $tag from $BASE_IMAGE (log: $LOGS/$name.log)"
  start=$(date +%s)
  docker build "${args[@]}" "images/$name" >"$LOGS/$name.log" 2>&1 ||
    { tail -n 40 "$LOGS/$name.log" >&2; die "$name: docker build failed (see $LOGS/$name.log)"; }
  rm -rf "images/$name/dist" "images/$name/ca-certificates"
  log "$name: built $tag in $(( $(date +%s) - start ))s" \
      "($(docker image inspect -f '{{.Size}}' "$tag" | numfmt --to=iec))"
  # the image this one replaces, unless a container still uses it, and
  # build stages older than the newest (which is the next build's cache)
  if [ -n "$old" ] && [ "$old" != "$(docker image inspect -f '{{.Id}}' "$tag")" ]; then
    docker rmi "$old" >/dev/null 2>&1 || true
  fi
  docker images -q --filter dangling=true --filter "label=org.labspace.stage=$name-proxy" |
    tail -n +2 | xargs -r docker rmi >/dev/null 2>&1 || true
}

what=${1:-all}
case "$what" in
  base) build_base ;;
  workspace) build_base; build_image workspace "$WORKSPACE_IMAGE" ;;
  hub) build_base; build_image hub "$HUB_IMAGE" ;;
  all) build_base; build_image workspace "$WORKSPACE_IMAGE"; build_image hub "$HUB_IMAGE" ;;
  *) die "unknown image '$what' (one of: base, workspace, hub, all)" ;;
esac
