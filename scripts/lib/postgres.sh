# Sourced by the test and demo scripts. `use_postgres` makes DATABASE_URL point at a
# PostgreSQL server: the one already in DATABASE_URL, or a throwaway cluster started here
# (initdb + pg_ctl on a free port, as the `postgres` user when running as root, because initdb
# refuses root) and stopped when the calling script exits. TASKER_PG_EXTRA_OPTS adds server
# settings to a throwaway cluster (e.g. `-c shared_preload_libraries=pg_stat_statements`).

_tasker_pg_dir=""

_tasker_pg_bin() {
  local dir
  for dir in /usr/lib/postgresql/*/bin; do
    if [ -x "$dir/initdb" ]; then
      echo "$dir"
      return 0
    fi
  done
  return 1
}

_tasker_pg_stop() {
  if [ -n "$_tasker_pg_dir" ] && [ -d "$_tasker_pg_dir" ]; then
    local bin
    bin=$(_tasker_pg_bin) || return 0
    if [ "$(id -u)" = 0 ]; then
      runuser -u postgres -- "$bin/pg_ctl" -D "$_tasker_pg_dir/data" -m fast stop >/dev/null 2>&1 || true
    else
      "$bin/pg_ctl" -D "$_tasker_pg_dir/data" -m fast stop >/dev/null 2>&1 || true
    fi
    rm -rf "$_tasker_pg_dir"
    echo "==> stopped throwaway PostgreSQL"
  fi
}

use_postgres() {
  case "${DATABASE_URL:-}" in
    postgres://*|postgresql://*)
      echo "==> PostgreSQL tests use DATABASE_URL (${DATABASE_URL%%@*}@…)"
      return 0
      ;;
  esac
  local bin
  if ! bin=$(_tasker_pg_bin); then
    echo "==> installing PostgreSQL (apt-get)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    bin=$(_tasker_pg_bin)
  fi
  _tasker_pg_dir=$(mktemp -d /tmp/tasker-pg.XXXXXX)
  chmod 755 "$_tasker_pg_dir"
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  local run=()
  if [ "$(id -u)" = 0 ]; then
    chown postgres "$_tasker_pg_dir"
    run=(runuser -u postgres --)
  fi
  "${run[@]}" "$bin/initdb" -D "$_tasker_pg_dir/data" -A trust -U postgres --no-sync >/dev/null
  "${run[@]}" "$bin/pg_ctl" -D "$_tasker_pg_dir/data" -l "$_tasker_pg_dir/log" -w \
    -o "-p $port -k $_tasker_pg_dir -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off ${TASKER_PG_EXTRA_OPTS:-}" start >/dev/null
  trap _tasker_pg_stop EXIT
  export DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
  echo "==> started throwaway PostgreSQL on port $port"
}
