#!/usr/bin/env bash
# Side by side, in one run: this checkout's `indexer reindex` and extraction-only reader against
# those of an earlier commit (issue 10: "no slowdown beyond noise against the figures before the
# change"). farm-bench runs A (this checkout) and B (BASE) in turn and gives the ratio pair by pair.
#
#   bench/before_after.sh BASE_COMMIT [ROWS_LABEL]     e.g. bench/before_after.sh 0b38ac5 1m
#   APPEND=BENCHMARKS.md bench/before_after.sh ...     also write the section into BENCHMARKS.md
#   TITLE="Before and after issue N" APPEND=...          the section's title (one per change measured)
#
# Needs the local OpenSearch node and PostgreSQL (make engine, make pg) and the bench data and job
# files that `python bench/run.py` writes (bench/data/). BASE is checked out in a temporary git
# worktree (removed at the end) that uses this checkout's virtualenv; its own code is run, from its
# own folder. Prints farm-bench's report for each of: reindex SQLite, reindex PostgreSQL, extraction
# only SQLite, extraction only PostgreSQL, sync SQLite over the whole table (marks looked up for every row);
# then this checkout against itself with Python's default
# garbage-collector thresholds (the command line tunes them: indexer.tune_gc).
set -euo pipefail
BASE="${1:?usage: bench/before_after.sh BASE_COMMIT [ROWS_LABEL]}"
SIZE="${2:-1m}"
RUNS="${RUNS:-3}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$REPO/.venv/bin/python"
WT="$(mktemp -d)/base"
git -C "$REPO" worktree add --detach "$WT" "$BASE" >/dev/null
trap 'git -C "$REPO" worktree remove --force "$WT"' EXIT
ROWS=$(case "$SIZE" in 1m) echo 1000000;; 200k) echo 200000;; 20k) echo 20000;; *) echo "size: 1m | 200k | 20k" >&2; exit 2;; esac)
STATE="$(mktemp -d)"
REPORT="$(mktemp)"
exec > >(tee "$REPORT") 2>&1
echo "A: $(git -C "$REPO" rev-parse --short HEAD) (this checkout)   B: $(git -C "$WT" rev-parse --short HEAD)   $ROWS rows   $(date -u +%FT%TZ)"
for source in sqlite pg; do
  JOB="$REPO/bench/data/jobs/$source-$SIZE.toml"
  echo; echo "== indexer reindex, $source"
  farm-bench -n "$RUNS" --timeout 3600 \
    --vs "sh -c 'cd $WT && exec $PY -m indexer.cli reindex $JOB --json --no-progress --state-file $STATE/b-$source.json'" \
    -- sh -c "cd $REPO && exec $PY -m indexer.cli reindex $JOB --json --no-progress --state-file $STATE/a-$source.json"
done
for source in sqlite pg; do
  JOB="$REPO/bench/data/jobs/$source-$SIZE.toml"
  echo; echo "== extraction only (read + encode, nothing sent), $source"
  farm-bench -n "$RUNS" --timeout 3600 \
    --vs "sh -c 'cd $WT && exec $PY bench/baselines.py extract $JOB --rows $ROWS'" \
    -- sh -c "cd $REPO && exec $PY bench/baselines.py extract $JOB --rows $ROWS"
done
# Sync over the whole table: the stored watermark set back before every row, with the marks a first sync
# stored (lookback 30d: about 16,000 of 1,000,000 rows, under MAX_MARKS), so that every row read is
# fingerprinted and looked up, those marks skipped and the rest sent. Each side makes its own starting state
# with its own code (their marks need not have the same form), then every run starts from a copy of it.
SYNC_JOB="$STATE/sqlite-$SIZE-sync.toml"
sed -e 's/^alias = .*/alias = "bench-sync"/' "$REPO/bench/data/jobs/sqlite-$SIZE.toml" > "$SYNC_JOB"
printf 'watermark = "date_updated"\nlookback = "30d"\n' >> "$SYNC_JOB"
"$PY" -m indexer.cli reindex "$SYNC_JOB" --json --no-progress --state-file "$STATE/sync-reindexed.json" >/dev/null
back() { "$PY" -c 'import json, sys; s = json.load(open(sys.argv[1])); s["bench-sync"]["watermark"]["value"] = "2000-01-01 00:00:00"; json.dump(s, open(sys.argv[2], "w"))' "$1" "$2"; }
for side in a b; do
  dir=$([ "$side" = a ] && echo "$REPO" || echo "$WT")
  back "$STATE/sync-reindexed.json" "$STATE/sync-$side-first.json"
  (cd "$dir" && "$PY" -m indexer.cli sync "$SYNC_JOB" --json --no-progress --state-file "$STATE/sync-$side-first.json" >/dev/null)
  back "$STATE/sync-$side-first.json" "$STATE/sync-$side.json"
done
echo; echo "== indexer sync, sqlite, every row read again (marks of a 30-day window)"
farm-bench -n "$RUNS" --timeout 3600 \
  --vs "sh -c 'cp $STATE/sync-b.json $STATE/sync-b-run.json && cd $WT && exec $PY -m indexer.cli sync $SYNC_JOB --json --no-progress --state-file $STATE/sync-b-run.json'" \
  -- sh -c "cp $STATE/sync-a.json $STATE/sync-a-run.json && cd $REPO && exec $PY -m indexer.cli sync $SYNC_JOB --json --no-progress --state-file $STATE/sync-a-run.json"
JOB="$REPO/bench/data/jobs/sqlite-$SIZE.toml"
echo; echo "== indexer reindex, sqlite; B: this checkout with Python's default collector thresholds"
farm-bench -n "$RUNS" --timeout 3600 \
  --vs "sh -c 'cd $REPO && exec $PY -c \"import indexer.cli as c; c.tune_gc = lambda: None; c.app()\" reindex $JOB --json --no-progress --state-file $STATE/gc-b.json'" \
  -- sh -c "cd $REPO && exec $PY -m indexer.cli reindex $JOB --json --no-progress --state-file $STATE/gc-a.json"
if [ -n "${APPEND:-}" ]; then
  sleep 1  # tee flushes
  "$PY" "$REPO/bench/before_after_report.py" "$REPORT" "$APPEND" ${TITLE:+"$TITLE"}
  echo "wrote the section into $APPEND"
fi
