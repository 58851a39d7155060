#!/usr/bin/env bash
# Start the scale-out services the tests use: PostgreSQL (Debian's packages) and an MLflow
# tracking server backed by it, both on 127.0.0.1, in a throw-away folder.
#
#   .ci/services.sh start DIR   -> prints `export AUTOACCEL_TEST_*=...` lines for the tests
#   .ci/services.sh stop DIR
#
# Installs postgresql with apt when it is missing (CI); runs the server as the `postgres`
# user when started as root (PostgreSQL refuses to run as root). Needs the project's
# virtual environment (.venv, `make install`) for `mlflow server` and psycopg.
set -euo pipefail
cmd=${1:?usage: services.sh start|stop DIR}
dir=${2:?usage: services.sh start|stop DIR}
top="$(cd "$(dirname "$0")/.." && pwd)"

pgbin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
free_port() { "$top/.venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

if [ "$cmd" = stop ]; then
  [ -f "$dir/mlflow.pid" ] && kill "$(cat "$dir/mlflow.pid")" 2>/dev/null || true
  bin=$(pgbin)
  [ -n "$bin" ] && [ -d "$dir/pg" ] && as_pg "$bin/pg_ctl" -D "$dir/pg" -m fast -w stop >/dev/null 2>&1 || true
  exit 0
fi

if [ -z "$(pgbin)" ]; then
  echo "== installing postgresql (for the scale-out tests)" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq >/dev/null
  $SUDO apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi
bin=$(pgbin)
mkdir -p "$dir"
chmod 755 "$dir"
password=autoaccel-ci
pgport=$(free_port)
echo "$password" >"$dir/pwfile"
mkdir -p "$dir/pg"
if [ "$(id -u)" -eq 0 ]; then chown postgres "$dir/pg" "$dir/pwfile"; fi
as_pg "$bin/initdb" -D "$dir/pg" -U autoaccel --pwfile="$dir/pwfile" -A scram-sha-256 >"$dir/initdb.log"
# in the config file, not on the command line: a plain `pg_ctl start` keeps them (the tests
# stop and start the server)
printf "listen_addresses = '127.0.0.1'\nport = %s\nunix_socket_directories = '%s'\n" \
  "$pgport" "$dir/pg" >>"$dir/pg/postgresql.conf"
as_pg "$bin/pg_ctl" -D "$dir/pg" -l "$dir/pg/server.log" -w start >/dev/null
export PGPASSWORD=$password
psql -q -h 127.0.0.1 -p "$pgport" -U autoaccel -d postgres -c "create database optuna" -c "create database mlflow"
base="postgresql://autoaccel:$password@127.0.0.1:$pgport"

mlport=$(free_port)
# no GenAI job runners (four huey consumers polling a queue autoaccel never fills)
MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false "$top/.venv/bin/mlflow" server --host 127.0.0.1 --port "$mlport" \
  --backend-store-uri "$base/mlflow" --artifacts-destination "$dir/artifacts" \
  --workers 1 >"$dir/mlflow.log" 2>&1 &
echo $! >"$dir/mlflow.pid"
for _ in $(seq 1 120); do
  if curl -fs "http://127.0.0.1:$mlport/health" >/dev/null 2>&1; then break; fi
  kill -0 "$(cat "$dir/mlflow.pid")" 2>/dev/null || break  # it died: report below
  sleep 1
done
curl -fs "http://127.0.0.1:$mlport/health" >/dev/null || { echo "mlflow server did not start; see $dir/mlflow.log" >&2; tail -20 "$dir/mlflow.log" >&2; exit 1; }

echo "export AUTOACCEL_TEST_PG_URL=$base/optuna"
echo "export AUTOACCEL_TEST_PG_ADMIN_URL=$base/postgres"
echo "export AUTOACCEL_TEST_MLFLOW_URL=http://127.0.0.1:$mlport"
echo "export AUTOACCEL_TEST_PG_CTL='$bin/pg_ctl'"
echo "export AUTOACCEL_TEST_PG_DATA=$dir/pg"
