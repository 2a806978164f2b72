#!/usr/bin/env bash
# Start a real MLflow tracking server and model registry for Seamline.
#
# Embedded default: SQLite in mlflow/mlflow.db and artifacts under mlflow/artifacts, proxied by
# the server (clients need no storage credentials), on 127.0.0.1:5000 only.
# Production: set the store and artifact location to PostgreSQL and S3 (SeaweedFS in infra/)
# through the environment, e.g.
#   MLFLOW_BACKEND_STORE_URI=postgresql://mlflow:$PGPASSWORD@postgres/mlflow \
#   MLFLOW_ARTIFACTS_DESTINATION=s3://mlflow-artifacts MLFLOW_S3_ENDPOINT_URL=http://s3:8333 \
#   MLFLOW_HOST=0.0.0.0 MLFLOW_AUTH=basic mlflow/server.sh
# Credentials come only from the environment (or an uncommitted .env), never from this file.
#
# Variables: MLFLOW_BACKEND_STORE_URI, MLFLOW_ARTIFACTS_DESTINATION, MLFLOW_HOST, MLFLOW_PORT,
# MLFLOW_WORKERS, MLFLOW_AUTH (basic: MLflow's basic-auth app), MLFLOW_ALLOWED_HOSTS, MLFLOW_BIN,
# MLFLOW_DISABLE_TELEMETRY (true unless set: the server and its UI send no usage data).
set -euo pipefail
export MLFLOW_DISABLE_TELEMETRY="${MLFLOW_DISABLE_TELEMETRY:-true}"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
store="${MLFLOW_BACKEND_STORE_URI:-sqlite:///${here}/mlflow.db}"
artifacts="${MLFLOW_ARTIFACTS_DESTINATION:-${here}/artifacts}"
host="${MLFLOW_HOST:-127.0.0.1}"
port="${MLFLOW_PORT:-5000}"
workers="${MLFLOW_WORKERS:-2}"
mlflow_bin="${MLFLOW_BIN:-mlflow}"

# A relative SQLite path or artifact folder is relative to the project root, as in params.yaml.
cd "${here}/.."
case "$store" in sqlite:///*) mkdir -p "$(dirname "${store#sqlite:///}")" ;; esac
case "$artifacts" in *://*) ;; *) mkdir -p "$artifacts" ;; esac

args=(server --backend-store-uri "$store" --artifacts-destination "$artifacts" --serve-artifacts
      --host "$host" --port "$port" --workers "$workers")
if [[ -n "${MLFLOW_ALLOWED_HOSTS:-}" ]]; then args+=(--allowed-hosts "$MLFLOW_ALLOWED_HOSTS"); fi
if [[ "${MLFLOW_AUTH:-}" == "basic" ]]; then args+=(--app-name basic-auth); fi

echo "mlflow server: store ${store%%:*}:…, artifacts ${artifacts}, http://${host}:${port}" >&2
exec "$mlflow_bin" "${args[@]}"
