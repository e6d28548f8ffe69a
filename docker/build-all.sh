#!/usr/bin/env bash
# Builds the seven service images: cloudflux/<service>:<tag>.
set -euo pipefail
cd "$(dirname "$0")/.."
TAG=${TAG:-dev}
for svc in auth storage-adapter classification prediction migration sandbox neural-cluster; do
  docker build -f docker/Dockerfile --build-arg SERVICE="$svc" -t "cloudflux/$svc:$TAG" .
done
