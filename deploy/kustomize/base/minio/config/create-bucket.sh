#!/bin/sh
# Creates the videos bucket and a user that may use only that bucket, so the
# services never hold MinIO's root credentials. Safe to run again.
set -eu
# As PID 1 the shell ignores SIGTERM unless trapped, and runs a trap only
# between commands: hence the trap and the backgrounded sleep below.
trap 'exit 143' TERM INT
mc() { command mc --config-dir /tmp/mc "$@"; }
until mc alias set mochi http://minio:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"; do
  echo "waiting for minio"; sleep 3 & wait $!
done
mc mb --ignore-existing "mochi/$BUCKET"
# A second run may meet the policy already there; that is fine.
mc admin policy create mochi mochi-videos /config/videos-policy.json \
  || mc admin policy info mochi mochi-videos >/dev/null
mc admin user add mochi "$APP_ACCESS_KEY" "$APP_SECRET_KEY"
mc admin policy attach mochi mochi-videos --user "$APP_ACCESS_KEY" || true  # already attached
