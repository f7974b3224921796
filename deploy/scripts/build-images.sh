#!/usr/bin/env bash
# Builds every image the manifests name that this repository makes, tagged as
# deploy/kustomize/base/kustomization.yaml's `images:` list tags them
# (tests/test_deploy_images.py checks the two agree):
#   <registry>/mochi-serve:<version>                 API and catalog (and webhooks)
#   <registry>/mochi-serve-runner:<version>-cu130      GPU runner, weights DaemonSet
#   <registry>/mochi-serve-runner:<version>-cu130-fa4  GPU runner with FlashAttention-4 (h100x8)
# <version> is pyproject.toml's. Run from anywhere; it builds from the repository root.
#
#   deploy/scripts/build-images.sh                      # docker build
#   BUILDER=buildah deploy/scripts/build-images.sh      # or podman: same build/push verbs
#   PUSH=1 deploy/scripts/build-images.sh               # and push each image
#   REGISTRY=registry.example.com/mochi deploy/scripts/build-images.sh  # then set the same
#     newName in an overlay of your own (kustomize edit set image)
set -euo pipefail
cd "$(dirname "$0")/../.."
builder="${BUILDER:-docker}"
registry="${REGISTRY:-ghcr.io/mochi-serve}"
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml | head -n 1)"
[ -n "$version" ] || { echo "no version in pyproject.toml" >&2; exit 1; }
command -v "$builder" >/dev/null || { echo "$builder not found: set BUILDER=docker|buildah|podman" >&2; exit 1; }

built=()
build() {  # image dockerfile [build args...]
  local image="$1" dockerfile="$2"
  shift 2
  echo "building $image from $dockerfile" >&2
  "$builder" build -f "$dockerfile" -t "$image" "$@" .
  built+=("$image")
}

build "$registry/mochi-serve:$version" deploy/docker/api.Dockerfile
build "$registry/mochi-serve-runner:$version-cu130" deploy/docker/runner.Dockerfile --build-arg EXTRAS=runner
build "$registry/mochi-serve-runner:$version-cu130-fa4" deploy/docker/runner.Dockerfile --build-arg EXTRAS=runner,fa4

if [ "${PUSH:-0}" = 1 ]; then
  for image in "${built[@]}"; do
    "$builder" push "$image"
  done
fi
printf '%s\n' "${built[@]}"
