#!/usr/bin/env bash
# Throwaway local Prometheus server (Debian's `prometheus` package, 2.42; it brings `promtool`) for the
# tests: it scrapes `indexer sync --every ... --metrics-port P` and evaluates deploy/prometheus/alerts.yml.
#   scripts/prometheus.sh start|stop|status|url        (make prometheus / make prometheus-stop)
#   start   installs the package from apt when /usr/bin/prometheus is missing (sudo -n unless root), then
#           starts the server and waits until it answers GET /-/ready (PROM_START_TIMEOUT, 30 s).
#           Idempotent: our server already up is kept (its config is rewritten and reloaded: SIGHUP).
#           A fresh start is a throwaway server: it begins with an empty data/ and an empty targets/.
#   stop    stops our server only (the pid in PROM_DIR whose command line names our config); idempotent
#   status  exit 0 only when our server answers GET /-/ready on PROM_PORT
#   url     prints http://127.0.0.1:PROM_PORT (the HTTP API: $(scripts/prometheus.sh url)/api/v1/query)
# Env: PROM_PORT (9490), PROM_DIR (<repo>/.services/prometheus), PROM_START_TIMEOUT (30).
#
# Layout of PROM_DIR: prometheus.yml (written by start), data/ (the TSDB), prometheus.pid,
# prometheus.port, prometheus.log, targets/ (scrape targets).
# The config: scrape and rule evaluation every 1s, rule_files = <repo>/deploy/prometheus/alerts.yml, one
# scrape job `indexer` with honor_labels: true (the metrics carry their own `job` label, the job file's
# name; the synthetic `up` series keeps job="indexer") and file_sd_configs over PROM_DIR/targets/*.json,
# re-read every second. A test adds a scrape target by writing (atomically: write a temporary name that
# does not end in .json, then rename) a file PROM_DIR/targets/<unique>.json holding
#     [{"targets": ["127.0.0.1:9464"], "labels": {"test": "my_test"}}]
# ("labels" optional, added to every series; the metrics path is /metrics) and removes it when done.
# A new file is scraped within about 5 s (Prometheus applies discovery changes at most every 5 s), then every
# second; the test polls $(url)/api/v1/query?query=... (e.g. up{instance="127.0.0.1:9464"} == 1) until then.
#
# The server is private to its folder (hence to its checkout): "ours" is the server that answers on
# 127.0.0.1:PROM_PORT and reports (GET /api/v1/status/flags) config.file = PROM_DIR/prometheus.yml.
# Anything else on PROM_PORT (another checkout's server, the package's system service, anything
# listening) is never used: start and status refuse it in one line. The package's own service
# (port 9090, /etc/prometheus) is not ours and is never touched; if installing started it, start says so.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
PORT=${PROM_PORT:-9490}
DIR=$(realpath -m "${PROM_DIR:-$REPO/.services/prometheus}")
TIMEOUT=${PROM_START_TIMEOUT:-30}
URL="http://127.0.0.1:$PORT"
CONFIG=$DIR/prometheus.yml
PIDFILE=$DIR/prometheus.pid
PORTFILE=$DIR/prometheus.port
LOG=$DIR/prometheus.log
RULES=$REPO/deploy/prometheus/alerts.yml
BIN=/usr/bin/prometheus

die() { echo "prometheus.sh: $*" >&2; exit 1; }

[[ $PORT =~ ^[0-9]+$ ]] || die "PROM_PORT must be a number"
[[ $TIMEOUT =~ ^[0-9]+$ ]] || die "PROM_START_TIMEOUT must be a number of seconds"
# Plain paths keep the YAML below and the JSON comparison in ours_up free of quoting issues.
for p in "$DIR" "$REPO"; do [[ $p =~ ^[A-Za-z0-9_./+@,=-]+$ ]] || die "unsupported characters in path: $p"; done

install_prometheus() {
  echo "prometheus.sh: installing prometheus from apt..." >&2
  local sudo=(); (( EUID == 0 )) || sudo=(sudo -n)
  "${sudo[@]}" apt-get update -qq
  # No recommends: they would add prometheus-node-exporter, another system service.
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  [[ -x $BIN ]] || die "no $BIN after installing prometheus"
  # The package's postinst may start its own service (port 9090, /etc/prometheus/prometheus.yml) where
  # an init system allows it. It is not ours: we never use nor stop it; say so once.
  if command -v systemctl >/dev/null && systemctl is-active --quiet prometheus 2>/dev/null; then
    echo "prometheus.sh: note: the package started the system service 'prometheus' (port 9090); it is not this server (systemctl disable --now prometheus to stop it)" >&2
  elif command -v systemctl >/dev/null && systemctl is-enabled --quiet prometheus 2>/dev/null; then
    echo "prometheus.sh: note: the package enabled the system service 'prometheus' (port 9090, not running now; it starts at boot under systemd); it is not this server" >&2
  elif curl -fsS -m 2 http://127.0.0.1:9090/-/ready >/dev/null 2>&1; then
    echo "prometheus.sh: note: a Prometheus answers on 127.0.0.1:9090 (the package's service?); it is not this server" >&2
  fi
}

ready() { curl -fsS -m 2 "$URL/-/ready" >/dev/null 2>&1; }

# Anything accepting TCP connections on 127.0.0.1:PORT.
port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

# Our server answers on PORT: ready, and its flags name our config file.
ours_up() {
  ready && curl -fsS -m 2 "$URL/api/v1/status/flags" 2>/dev/null | grep -qF "\"config.file\":\"$CONFIG\""
}

# The pid of our server process (from the pid file, else found by its exact --config.file argument).
our_pid() {
  local pid p
  if [[ -f $PIDFILE ]] && pid=$(<"$PIDFILE") && [[ $pid =~ ^[0-9]+$ ]] && is_ours "$pid"; then echo "$pid"; return 0; fi
  for p in /proc/[0-9]*; do
    pid=${p#/proc/}
    is_ours "$pid" && { echo "$pid"; return 0; }
  done
  return 1
}

# PID is a prometheus process started with our config file.
is_ours() {
  local args
  args=$(tr '\0' '\n' <"/proc/$1/cmdline" 2>/dev/null) || return 1
  [[ $(head -n1 <<<"$args") == "$BIN" ]] && grep -qxF -- "--config.file=$CONFIG" <<<"$args"
}

not_ours() {
  die "127.0.0.1:$PORT is taken by another server, not the Prometheus of $DIR (another checkout's? the system one?); set PROM_PORT to a free port"
}

write_config() {
  mkdir -p "$DIR/targets" "$DIR/data"
  local tmp=$CONFIG.tmp
  cat >"$tmp" <<EOF
# Written by scripts/prometheus.sh at each start; edits are lost.
global:
  scrape_interval: 1s
  evaluation_interval: 1s
  scrape_timeout: 1s
rule_files:
  - $RULES
scrape_configs:
  - job_name: indexer
    honor_labels: true   # the metrics' own job label (the job file's name) wins; up keeps job="indexer"
    file_sd_configs:
      - files: ["$DIR/targets/*.json"]
        refresh_interval: 1s
EOF
  mv -f "$tmp" "$CONFIG"
}

start_server() {
  # A throwaway server: no series nor targets left by an earlier run.
  rm -rf "$DIR/data" "$DIR/targets"
  write_config
  : >"$LOG"
  (cd "$DIR" && exec setsid nohup "$BIN" \
      --config.file="$CONFIG" \
      --storage.tsdb.path="$DIR/data" \
      --storage.tsdb.retention.time=1d \
      --web.listen-address="127.0.0.1:$PORT" \
      --web.enable-lifecycle \
      --log.level=info \
      </dev/null >>"$LOG" 2>&1 9>&-) &
  local pid=$!
  echo "$pid" >"$PIDFILE"
  echo "$PORT" >"$PORTFILE"
  local waited=0
  until ours_up; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "prometheus.sh: Prometheus exited at start; tail of $LOG:" >&2
      tail -n 20 "$LOG" >&2 || true
      rm -f "$PIDFILE"
      exit 1
    fi
    if (( waited >= TIMEOUT * 4 )); then
      echo "prometheus.sh: Prometheus not ready on $URL after $TIMEOUT s (PROM_START_TIMEOUT); stopping it; tail of $LOG:" >&2
      tail -n 20 "$LOG" >&2 || true
      stop_pid "$pid"
      exit 1
    fi
    sleep 0.25
    waited=$(( waited + 1 ))
  done
}

stop_pid() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || true
  for (( i = 0; i < 120; i++ )); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$PIDFILE" "$PORTFILE"; return 0; }
    sleep 0.25
  done
  kill -KILL "$pid" 2>/dev/null || true
  sleep 0.5
  rm -f "$PIDFILE" "$PORTFILE"
  echo "prometheus.sh: killed pid $pid (did not stop within 30 s)" >&2
}

cmd_start() {
  [[ -x $BIN ]] || install_prometheus
  [[ -f $RULES ]] || die "no rule file $RULES"
  mkdir -p "$DIR"
  # Serialise concurrent starts (e.g. make -j); the server must not inherit fd 9.
  exec 9>"/tmp/indexer-prometheus-$(printf %s "$DIR" | sha256sum | cut -c1-12).lock"
  flock -w 60 9 || die "another 'prometheus.sh start' holds the lock"

  local pid
  if ours_up; then
    write_config
    if pid=$(our_pid); then kill -HUP "$pid"; fi  # re-read the config and the rules
    echo "prometheus running on $URL (data: $DIR/data; reused)"
    return 0
  elif port_taken; then
    not_ours
  elif pid=$(our_pid); then
    die "the Prometheus of $DIR (pid $pid) runs on port $(cat "$PORTFILE" 2>/dev/null || echo '?'), not on PROM_PORT=$PORT (or does not answer); run '$0 stop' first"
  fi
  start_server
  echo "prometheus running on $URL (data: $DIR/data)"
}

cmd_stop() {
  local pid
  pid=$(our_pid) || { rm -f "$PIDFILE" "$PORTFILE"; return 0; }
  stop_pid "$pid"
}

cmd_status() {
  if ours_up; then echo "running on $URL (data: $DIR/data)"; exit 0; fi
  port_taken && not_ours
  echo "not running" >&2; exit 1
}

case ${1:-} in
  start)  cmd_start ;;
  stop)   cmd_stop ;;
  status) cmd_status ;;
  url)    echo "$URL" ;;
  *)      die "usage: $0 start|stop|status|url" ;;
esac
