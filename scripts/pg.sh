#!/usr/bin/env bash
# Throwaway local PostgreSQL for integration tests and benchmarks.
#   scripts/pg.sh start|stop|status|url
# Env: PG_PORT (54329), PG_USER (indexer), PG_DB (indexer_test),
#      PG_DIR (<repo>/.services/pg), PG_PASSWORD (required by start).
# The server is private to its data folder (hence to its checkout): "ours" is the server whose
# postmaster.pid in DIR names PG_PORT and a live process. Another server on PG_PORT (another
# checkout's, a system one, anything listening) is never used: start and status refuse it in one line.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
PORT=${PG_PORT:-54329}
ROLE=${PG_USER:-indexer}
DB=${PG_DB:-indexer_test}

die() { echo "pg.sh: $*" >&2; exit 1; }

[[ $PORT =~ ^[0-9]+$ ]] || die "PG_PORT must be a number"
# Plain names keep the `url` output and the SQL below free of quoting issues.
for n in "$ROLE" "$DB"; do [[ $n =~ ^[A-Za-z_][A-Za-z0-9_-]*$ ]] || die "bad name: $n"; done

# Postgres refuses to run as root; as a normal user we simply run as ourselves.
as_pg() {
  if (( EUID == 0 )); then (cd / && runuser -u postgres -- "$@"); else (cd / && "$@"); fi
}

find_bin() {
  local c; c=$(ls -d /usr/lib/postgresql/*/bin/pg_ctl 2>/dev/null | sort -V | tail -n1) || true
  BIN=${c%/pg_ctl}
}

install_pg() {
  echo "pg.sh: installing PostgreSQL from apt..." >&2
  local sudo=(); (( EUID == 0 )) || sudo=(sudo -n)
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
}

# The postgres user must be able to reach its data dir, and the socket path must
# fit in sun_path (107 bytes); otherwise fall back to /tmp.
usable_dir() {
  local p=$1
  (( ${#p} + 16 <= 107 )) || return 1
  (( EUID == 0 )) || return 0
  while [[ ! -e $p ]]; do p=$(dirname "$p"); done
  runuser -u postgres -- test -x "$p" 2>/dev/null
}

pick_dir() {
  if [[ -n ${PG_DIR:-} ]]; then
    DIR=$(realpath -m "$PG_DIR")
    usable_dir "$DIR" || die "PG_DIR=$DIR is not reachable by the postgres user (or too long)"
  else
    DIR=$REPO/.services/pg
    if ! usable_dir "$DIR"; then
      DIR=/tmp/indexer-pg-$(printf %s "$REPO" | sha256sum | cut -c1-12)
      FALLBACK=1
    fi
  fi
}

ready() { [[ -n $BIN ]] && "$BIN/pg_isready" -q -h "$1" -p "$PORT" >/dev/null 2>&1; }

# Anything (PostgreSQL or not) accepting TCP connections on 127.0.0.1:PORT.
port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

# Our server is up on PORT: postmaster.pid in our DIR (line 1 the pid, line 4 the port) names PORT
# and a live process, and it answers on our socket directory (a reused pid answers nothing there).
ours_up() {
  local pid port
  [[ -f $DIR/postmaster.pid ]] || return 1
  { read -r pid; read -r _; read -r _; read -r port; } <"$DIR/postmaster.pid" || return 1
  [[ $pid =~ ^[0-9]+$ && $port == "$PORT" ]] && kill -0 "$pid" 2>/dev/null && ready "$DIR"
}

not_ours() {
  die "127.0.0.1:$PORT is taken by another server, not the PostgreSQL of $DIR (another checkout's?); set PG_PORT to a free port"
}

init_cluster() {
  mkdir -p "$(dirname "$DIR")"
  [[ -d $DIR ]] || install -d -m 700 "$DIR"
  (( EUID == 0 )) && chown postgres:postgres "$DIR" && chmod 700 "$DIR"
  local out
  out=$(as_pg "$BIN/initdb" -D "$DIR" --encoding=UTF8 --locale=C.UTF-8 \
        --auth-local=peer --auth-host=scram-sha-256 2>&1) || { echo "$out" >&2; die "initdb failed in $DIR"; }
  as_pg tee "$DIR/pg_hba.conf" >/dev/null <<'EOF'
local all all                  peer
host  all all 127.0.0.1/32     scram-sha-256
host  all all ::1/128          scram-sha-256
EOF
  echo "include_if_exists = 'indexer.conf'" | as_pg tee -a "$DIR/postgresql.conf" >/dev/null
}

start_server() {
  # Rewritten each start so PG_PORT / a moved PG_DIR take effect.
  as_pg tee "$DIR/indexer.conf" >/dev/null <<EOF
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '${DIR//\'/\'\'}'
password_encryption = 'scram-sha-256'
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 128MB
max_connections = 50
EOF
  as_pg "$BIN/pg_ctl" -D "$DIR" -l "$DIR/server.log" -w -t 30 start >/dev/null 2>&1 9>&- || true
  if ! ready 127.0.0.1; then
    echo "pg.sh: PostgreSQL did not start (waited up to 30 s); tail of $DIR/server.log:" >&2
    tail -n 20 "$DIR/server.log" >&2 2>/dev/null || true
    exit 1
  fi
}

ensure_role_db() {
  local pw=$1
  # SQL goes through stdin so the password never shows up in `ps`.
  printf '%s\n' \
    "SELECT format('CREATE ROLE %I LOGIN', :'role') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role') \\gexec" \
    "ALTER ROLE :\"role\" LOGIN PASSWORD '${pw//"'"/"''"}';" \
    "SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'role') WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \\gexec" \
    | as_pg "$BIN/psql" -X -q -h "$DIR" -p "$PORT" -d postgres -v ON_ERROR_STOP=1 \
        -v role="$ROLE" -v db="$DB" >/dev/null || die "could not create role/database"
}

cmd_start() {
  [[ -n ${PG_PASSWORD:-} ]] || die "PG_PASSWORD must be set (password for role $ROLE)"
  local pw=$PG_PASSWORD; export -n PG_PASSWORD   # keep it out of child environments
  [[ -n $BIN ]] || { install_pg; find_bin; [[ -n $BIN ]] || die "no pg_ctl after installing postgresql"; }
  (( EUID != 0 )) || id postgres >/dev/null 2>&1 || die "no 'postgres' OS user"
  [[ -z ${FALLBACK:-} ]] || echo "pg.sh: repo not reachable by postgres; data dir is $DIR" >&2
  # Serialise concurrent starts (e.g. make -j); the server must not inherit fd 9.
  exec 9>"/tmp/indexer-pg-$(printf %s "$DIR" | sha256sum | cut -c1-12).lock"
  flock -w 60 9 || die "another 'pg.sh start' holds the lock"

  if ours_up; then
    :  # already running: only the role and database below
  elif port_taken; then
    not_ours
  elif as_pg "$BIN/pg_ctl" -D "$DIR" status >/dev/null 2>&1; then
    die "server in $DIR runs on another port than $PORT; run '$0 stop' first"
  else
    if [[ ! -f $DIR/PG_VERSION ]]; then init_cluster; fi
    local v; v=$(<"$DIR/PG_VERSION")
    [[ $BIN == */$v/bin ]] || die "$DIR was made by PostgreSQL $v but binaries are $BIN; delete it"
    start_server
  fi
  ensure_role_db "$pw"
  echo "postgres running on 127.0.0.1:$PORT (data: $DIR)"
}

cmd_stop() {
  [[ -n $BIN && -f $DIR/postmaster.pid ]] || return 0
  as_pg "$BIN/pg_ctl" -D "$DIR" -m fast -w stop >/dev/null 2>&1 || true
  ! as_pg "$BIN/pg_ctl" -D "$DIR" status >/dev/null 2>&1 || die "could not stop server in $DIR"
}

cmd_status() {
  if ours_up; then echo "running on 127.0.0.1:$PORT (data: $DIR)"; exit 0; fi
  port_taken && not_ours
  echo "not running" >&2; exit 1
}

find_bin
pick_dir
case ${1:-} in
  start)  cmd_start ;;
  stop)   cmd_stop ;;
  status) cmd_status ;;
  url)    echo "host=127.0.0.1 port=$PORT dbname=$DB user=$ROLE" ;;
  *)      die "usage: $0 start|stop|status|url" ;;
esac
