#!/bin/sh
# Creates the five Secrets the manifests read, with random passwords:
#   mochi-nats-users  passwords of the NATS users (api, catalog, runner, webhooks, scheduler, admin, sys)
#   mochi-minio       MinIO's root login and the services' bucket-only login
#   mochi-hf-token    the Hugging Face token the weights Job downloads with
#   mochi-api-keys    the API's keys file, with one admin key (printed once)
#   mochi-webhooks    the secret that signs webhook deliveries
# Run once per cluster, before the first `kubectl apply -k`. It refuses to
# replace an existing Secret: rotating a password means restarting NATS and
# every service, see docs/deploy.md.
#
#   HF_TOKEN=hf_... deploy/scripts/create-secrets.sh
set -eu
ns="${NAMESPACE:-mochi}"
: "${HF_TOKEN:?set HF_TOKEN to a Hugging Face access token (read scope)}"

# Hex only: the NATS passwords are placed inside the services' nats:// URLs.
pw() { openssl rand -hex 24; }

kubectl get namespace "$ns" >/dev/null 2>&1 || kubectl create namespace "$ns"

kubectl -n "$ns" create secret generic mochi-nats-users \
  --from-literal=api-password="$(pw)" \
  --from-literal=catalog-password="$(pw)" \
  --from-literal=runner-password="$(pw)" \
  --from-literal=webhooks-password="$(pw)" \
  --from-literal=scheduler-password="$(pw)" \
  --from-literal=admin-password="$(pw)" \
  --from-literal=sys-password="$(pw)"

kubectl -n "$ns" create secret generic mochi-minio \
  --from-literal=root-user=mochi-root \
  --from-literal=root-password="$(pw)" \
  --from-literal=app-access-key=mochi-serve \
  --from-literal=app-secret-key="$(pw)"

kubectl -n "$ns" create secret generic mochi-hf-token --from-literal=token="$HF_TOKEN"

# Standard Webhooks signing secret: receivers verify every delivery with it.
kubectl -n "$ns" create secret generic mochi-webhooks \
  --from-literal=secret="whsec_$(openssl rand -base64 32)"

# The keys file holds "<owner> <sha256 of the key> [admin]" lines, as
# `mochi keys new` prints them; the key itself is never stored.
api_key="msk_$(openssl rand -hex 32)"
api_key_hash="$(printf '%s' "$api_key" | openssl dgst -sha256 -r | cut -d' ' -f1)"
kubectl -n "$ns" create secret generic mochi-api-keys \
  --from-literal=keys="admin $api_key_hash admin"

echo "secrets created in namespace $ns"
echo "the admin API key (shown only now; keep it): $api_key"
