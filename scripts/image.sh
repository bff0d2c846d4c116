#!/bin/bash
# make image: builds deploy/Dockerfile with podman (else docker) as $IMAGE, with this host's npm
# registry settings as build secrets (never in a layer), and reports the image's size.
#   IMAGE=localhost/pidfd-agent:0.1.0 scripts/image.sh [extra build args...]
# NODE_IMAGE / NODE_RUNTIME_IMAGE: the build and runtime bases (the Dockerfile's ARGs), for a
# release pinned by digest: node:20-bookworm-slim@sha256:...
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=${IMAGE:-localhost/pidfd-agent:$(node -p 'require("./package.json").version')}
if command -v podman >/dev/null; then engine=podman
elif command -v docker >/dev/null && docker info >/dev/null 2>&1; then engine=docker
else echo "make image: needs podman, or docker with a running daemon" >&2; exit 1; fi

secrets=$(mktemp -d)
trap 'rm -rf "$secrets"' EXIT
# The registry and the CA npm uses here (a TLS-intercepting proxy's CA lives only in npm's cafile),
# and an auth token if the user's npmrc has one: the build's npm ci then reaches what this host's does.
registry=$(npm config get registry)
cafile=$(npm config get cafile)
{
  echo "registry=$registry"
  if [ -n "$cafile" ] && [ "$cafile" != null ] && [ -f "$cafile" ]; then
    cp "$cafile" "$secrets/npm-ca"
    echo "cafile=/run/secrets/npm-ca"
  fi
  [ -f "$HOME/.npmrc" ] && grep -E '_authToken|_auth|always-auth' "$HOME/.npmrc" || true
} > "$secrets/npmrc"
[ -f "$secrets/npm-ca" ] || : > "$secrets/npm-ca"

bases=()
[ -n "${NODE_IMAGE:-}" ] && bases+=(--build-arg "NODE_IMAGE=$NODE_IMAGE")
[ -n "${NODE_RUNTIME_IMAGE:-}" ] && bases+=(--build-arg "NODE_RUNTIME_IMAGE=$NODE_RUNTIME_IMAGE")
echo "make image: $engine build -f deploy/Dockerfile -t $IMAGE (registry $registry)"
DOCKER_BUILDKIT=1 "$engine" build -f deploy/Dockerfile \
  --secret id=npmrc,src="$secrets/npmrc" --secret id=npm-ca,src="$secrets/npm-ca" \
  -t "$IMAGE" "${bases[@]}" "$@" .
bytes=$("$engine" image inspect --format '{{.Size}}' "$IMAGE")
echo "make image: $IMAGE is $((bytes / 1000000)) MB"
