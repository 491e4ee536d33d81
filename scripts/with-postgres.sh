#!/usr/bin/env bash
# Run a command against a throwaway PostgreSQL cluster: initdb into a temporary directory,
# start it on a free loopback port (fsync off: test data only), export DATABASE_URL, run
# the command, then stop the cluster and delete it whatever happens.
set -euo pipefail

pgbin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
if [ -z "$pgbin" ]; then
  echo "PostgreSQL is not installed (make setup-postgres installs it)" >&2
  exit 1
fi
dir="$(mktemp -d /tmp/workbench-pg.XXXXXX)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
as_owner=()
if [ "$(id -u)" -eq 0 ]; then  # initdb refuses to run as root
  chown postgres "$dir"
  as_owner=(runuser -u postgres --)
fi
cleanup() {
  "${as_owner[@]}" "$pgbin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT
"${as_owner[@]}" "$pgbin/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 >"$dir/initdb.log"
"${as_owner[@]}" "$pgbin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -o \
  "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
  start >/dev/null
export DATABASE_URL="postgres://postgres@127.0.0.1:$port/workbench"
echo "PostgreSQL $("$pgbin/postgres" --version | awk '{print $3}') on port $port"
"$@"
