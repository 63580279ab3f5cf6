#!/usr/bin/env bash
# A local multi-node cluster of real nodes, one JVM per node, for the multi-node tests and the soak.
#   scripts/cluster.sh start         idempotent: starts the nodes not running, waits until all NODES have
#                                    joined and the cluster is at least yellow; refuses (one line) a port
#                                    held by anything else
#   scripts/cluster.sh stop          stops every node (SIGTERM, then SIGKILL after 30 s); idempotent
#   scripts/cluster.sh status        exit 0 when all NODES answer as one cluster of this folder
#   scripts/cluster.sh kill N        SIGKILL node N (1-based), as a crash; returns once it is gone
#   scripts/cluster.sh stop-node N   SIGTERM node N (a clean shutdown)
#   scripts/cluster.sh start-node N  starts node N again (its data kept) and waits until it has joined the
#                                    cluster (an elected master answers it; other nodes may still be down)
#   scripts/cluster.sh pid N         the pid of node N (exit 1 when it is not running)
#
# ENGINE: opensearch (default) | elasticsearch | elasticsearch9, the launchers of scripts/engine.sh with
# seed hosts instead of single-node discovery. NODES (3). Node N (named node-N) answers HTTP on
# ENGINE_PORT+N-1 (ENGINE_PORT: 9200) and transport on CLUSTER_TRANSPORT_PORT+N-1 (default ENGINE_PORT+1000,
# clear of the 9300-9399 range single nodes take). Every node is master-eligible and holds data.
# CLUSTER_DIR (.services/cluster-<engine>, under ENGINE_SERVICES when set) holds node-N/ per node and the
# shared class path; the cluster name is indexer-<12 hex of sha256 of CLUSTER_DIR's absolute path>, so two
# checkouts' clusters never merge (a node refuses peers of another cluster name). ENGINE_HEAP: per node
# (512m). OpenSearch nodes run in JVMs of their own too (not the runner's node count in one JVM), so that
# `kill N` is a real crash of one node and `start-node N` brings back just that one.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
NODES="${NODES:-3}"
BASE_PORT="${ENGINE_PORT:-9200}"
TRANSPORT_BASE="${CLUSTER_TRANSPORT_PORT:-$(( BASE_PORT + 1000 ))}"
[[ "$NODES" =~ ^[1-9][0-9]*$ ]] || { echo "cluster: NODES must be a positive number" >&2; exit 2; }
_engine="${ENGINE:-opensearch}"
_services="${ENGINE_SERVICES:-$(cd "$HERE/.." && pwd)/.services}"
CDIR="$(realpath -m "${CLUSTER_DIR:-$_services/cluster-$_engine}")"
export ENGINE_HEAP="${ENGINE_HEAP:-512m}"
# engine.sh's functions (find_jdk, classpath, launcher, launch_*, healthy, on_port, stop_dir), with the
# cluster's folder as ENGINE_DIR: the cluster name derives from it.
ENGINE_DIR="$CDIR" source "$HERE/engine.sh"
CACHE="$CDIR"

SEEDS="" MASTERS=""
for (( n = 1; n <= NODES; n++ )); do
  SEEDS+="${SEEDS:+,}127.0.0.1:$(( TRANSPORT_BASE + n - 1 ))"
  MASTERS+="${MASTERS:+,}node-$n"
done

node() {  # node N: point engine.sh's globals at node N
  local n="$1"
  [[ "$n" =~ ^[0-9]+$ ]] && (( n >= 1 && n <= NODES )) || { echo "cluster: no node $n (NODES=$NODES)" >&2; exit 2; }
  DIR="$CDIR/node-$n"
  PORT=$(( BASE_PORT + n - 1 ))
  URL="http://127.0.0.1:$PORT"
  TRANSPORT_PORTS=$(( TRANSPORT_BASE + n - 1 ))
  PIDFILE="$DIR/node.pid"
  PORTFILE="$DIR/node.port"
  LOG="$DIR/node.log"
  NODE_ARGS=("node-$n" "$SEEDS" "$MASTERS")
}

# The cluster as one node sees it: "NAME NODES STATUS", nothing when that node does not answer.
seen_from() {
  local body
  body="$(curl -sS -m 5 "$URL/_cluster/health" 2>/dev/null)" || return 0
  sed -n 's/.*"cluster_name" *: *"\([^"]*\)".*"status" *: *"\([a-z]*\)".*"number_of_nodes" *: *\([0-9]*\).*/\1 \3 \2/p' <<<"$body"
}

launch() {  # launch N: start node N unless it runs; refuses a port someone else holds
  node "$1"
  if our_pid >/dev/null; then return 0; fi
  local found
  found="$(on_port)"
  if [[ -n "$found" ]]; then
    echo "cluster: $URL (node $1's port) is taken by ${found% *} (cluster ${found#* }); stop it or set ENGINE_PORT" >&2
    exit 1
  fi
  if port_taken; then
    echo "cluster: 127.0.0.1:$PORT (node $1's port) is in use by another program; set ENGINE_PORT" >&2
    exit 1
  fi
  if timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$TRANSPORT_PORTS" 2>/dev/null; then
    echo "cluster: 127.0.0.1:$TRANSPORT_PORTS (node $1's transport port) is in use; set CLUSTER_TRANSPORT_PORT" >&2
    exit 1
  fi
  mkdir -p "$DIR"
  if [[ "$ENGINE" == opensearch ]]; then launch_opensearch; else launch_elasticsearch; fi
  echo "$PORT" >"$PORTFILE"
  echo "cluster: node-$1 starting (pid $(cat "$PIDFILE"), $URL, log $LOG)"
}

# wait_joined N [all]: until node N answers as a member of this cluster (it has found an elected master);
# with "all", until it sees all NODES nodes and the cluster is at least yellow.
wait_joined() {
  local n="$1" all="${2:-}" seen
  node "$n"
  for _ in $(seq 1 180); do
    seen="$(seen_from)"
    if [[ -z "$all" && "${seen%% *}" == "$CLUSTER" ]]; then return 0; fi
    if [[ "$seen" == "$CLUSTER $NODES green" || "$seen" == "$CLUSTER $NODES yellow" ]]; then return 0; fi
    if [[ -n "$seen" && "${seen%% *}" != "$CLUSTER" ]]; then
      echo "cluster: $URL answers as cluster ${seen%% *}, not $CLUSTER" >&2
      return 1
    fi
    if ! our_pid >/dev/null; then
      echo "cluster: node-$n exited; last log lines of $LOG:" >&2
      tail -n 30 "$LOG" >&2 || true
      return 1
    fi
    sleep 1
  done
  echo "cluster: node-$n does not see $NODES nodes of $CLUSTER after 180 s (it sees: ${seen:-nothing}); log $LOG" >&2
  return 1
}

start() {
  local n
  jdk="$(find_jdk)" || exit 1
  mkdir -p "$CDIR"
  # resolve and compile once, before the nodes start side by side
  classpath "$HERE/../engine/$([[ "$ENGINE" == opensearch ]] && echo pom.xml || echo elasticsearch/pom.xml)" >/dev/null
  for (( n = 1; n <= NODES; n++ )); do launch "$n"; done
  for (( n = 1; n <= NODES; n++ )); do
    if ! wait_joined "$n" all; then stop; exit 1; fi
  done
  echo "cluster: $NODES $NAME nodes up as $CLUSTER on ports $BASE_PORT-$(( BASE_PORT + NODES - 1 ))"
}

stop() {
  local n any=""
  for (( n = 1; n <= NODES; n++ )); do
    node "$n"
    stop_dir "$DIR" "node-$n" && any=1
  done
  # nodes beyond NODES from an earlier, larger cluster in this folder
  for dir in "$CDIR"/node-*; do
    [[ -d "$dir" ]] || continue
    n="${dir##*-}"
    (( n > NODES )) && stop_dir "$dir" "node-$n" && any=1
  done
  [[ -n "$any" ]] || echo "cluster: not running"
}

status() {
  local n seen
  for (( n = 1; n <= NODES; n++ )); do
    node "$n"
    seen="$(seen_from)"
    if [[ "$seen" != "$CLUSTER $NODES green" && "$seen" != "$CLUSTER $NODES yellow" ]]; then
      echo "cluster: node-$n on $URL: ${seen:-not answering} (wanted $CLUSTER with $NODES nodes)"
      exit 1
    fi
  done
  echo "cluster: $NODES $NAME nodes up as $CLUSTER on ports $BASE_PORT-$(( BASE_PORT + NODES - 1 ))"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  kill)
    node "${2:-}"
    pid="$(our_pid)" || { echo "cluster: node-$2 is not running" >&2; exit 1; }
    kill -KILL "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    rm -f "$PIDFILE"
    echo "cluster: node-$2 killed (pid $pid)" ;;
  stop-node)
    node "${2:-}"
    stop_dir "$DIR" "node-$2" || echo "cluster: node-$2 not running" ;;
  start-node)
    node "${2:-}"
    jdk="$(find_jdk)" || exit 1
    launch "$2"
    wait_joined "$2"
    echo "cluster: node-$2 is back in $CLUSTER" ;;
  pid)
    node "${2:-}"
    our_pid ;;
  *) echo "usage: [ENGINE=opensearch|elasticsearch|elasticsearch9] [NODES=3] [ENGINE_PORT=9200] $0 start|stop|status|kill N|stop-node N|start-node N|pid N" >&2; exit 2 ;;
esac
