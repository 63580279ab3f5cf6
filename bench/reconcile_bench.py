"""The reconcile benchmark of issue #11: ids compared per second and peak RSS at 1M and 5M ids (SQLite).

    python bench/reconcile_bench.py                      # 1,000,000 and 5,000,000 rows (~10 min here)
    python bench/reconcile_bench.py --sizes 1000000      # one size
    python bench/reconcile_bench.py --cli                # time `python -m indexer.cli reconcile` (once wired)

For each size: the SQLite table (demo/generate.py, reused from bench/data/ like bench/run.py),
a reindex into alias ``bench-reconcile-<size>`` that leaves out 0.5% of the rows
(``rowid % 200 = 1``), then the timed reconcile with a query that has those rows back and
another 0.5% gone (``rowid % 200 = 0``): 0.5% to index, 0.5% to delete, 99% unchanged.
The reconcile runs as its own child process through bench/run.py's launcher, which takes its
wall time and its own peak RSS (``os.wait4``: this runner's RSS never leaks into the figure).
"ids/s" is the ids compared (distinct ids on either side) over the child's wall time, Python's
start included. The state goes to a file in a temporary folder; the indices are deleted at the end.
Targets (reported, not asserted): RSS(5M) <= 200 MiB and <= 1.2 x RSS(1M); >= 50,000 ids/s.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from run import Failed, ensure_data, last_json, log, run_child, size_label, sqlite_file  # noqa: E402

TARGET_IDS_PER_S = 50_000
TARGET_RSS_MIB = 200
TARGET_RSS_GROWTH = 1.2
QUERY = "SELECT code, description, site, value, date_updated FROM sensors WHERE rowid % 200 != {left_out}"
# The in-process call, until `indexer reconcile` is wired into the CLI (--cli then times the command).
IN_PROCESS = ("import asyncio, dataclasses, json, sys; from pathlib import Path; from indexer.jobfile import load_job; "
              "from indexer.commands.reconcile import reconcile; "
              "s = asyncio.run(reconcile(load_job(sys.argv[1]), state_file=Path(sys.argv[2]))); "
              "print(json.dumps(s.as_dict(), default=str))")


def job_file(folder: Path, rows: int, url: str, left_out: int) -> Path:
    path = folder / f"reconcile-{size_label(rows)}-{left_out}.toml"
    path.write_text("\n".join([
        "[source]", 'dbtype = "SQLITE"', f"filename = {json.dumps(str(sqlite_file(rows)))}", "",
        "[target]", f"url = {json.dumps(url)}", "",
        "[job]", f'alias = "bench-reconcile-{size_label(rows)}"', 'key = ["code"]',
        f'query = "{QUERY.format(left_out=left_out)}"', "keep = 0", "chunk_size = 5000", "",
    ]))
    return path


def delete_indices(url: str, rows: int) -> None:
    request = urllib.request.Request(f"{url}/bench-reconcile-{size_label(rows)}-*", method="DELETE")
    try:
        urllib.request.urlopen(request, timeout=60).close()
    except OSError:
        pass  # nothing to delete


def measure(rows: int, url: str, folder: Path, env: dict[str, str], cli: bool) -> dict:
    log(f"{rows:,} rows: data {ensure_data('sqlite', rows, env)}")
    state = folder / f"state-{rows}.json"
    delete_indices(url, rows)
    before, after = job_file(folder, rows, url, 1), job_file(folder, rows, url, 0)
    wall, _, rss, out, err, code, _ = run_child(
        [sys.executable, "-m", "indexer.cli", "reindex", str(before), "--json", "--state-file", str(state)],
        env, timeout=3600)
    if code != 0:
        raise Failed(f"reindex failed: {err[-1000:]}")
    log(f"{rows:,} rows: reindexed in {wall:.0f} s (peak RSS {rss:.0f} MiB)")
    argv = ([sys.executable, "-m", "indexer.cli", "reconcile", str(after), "--json", "--state-file", str(state)]
            if cli else [sys.executable, "-c", IN_PROCESS, str(after), str(state)])
    wall, cpu, rss, out, err, code, _ = run_child(argv, env, timeout=3600)
    if code != 0:
        raise Failed(f"reconcile failed (exit {code}): {err[-1000:]}")
    summary = last_json(out)
    expected = rows // 200
    if (summary["deleted"], summary["indexed"]) != (expected, expected):
        raise Failed(f"reconcile of {rows} rows deleted {summary['deleted']} and indexed {summary['indexed']}, "
                     f"expected {expected} each")
    delete_indices(url, rows)
    result = {"rows": rows, "compared": summary["compared"], "wall": wall, "cpu": cpu, "rss": rss,
              "ids_per_second": summary["compared"] / wall, "in_run": summary["ids_per_second"],
              "deleted": summary["deleted"], "indexed": summary["indexed"]}
    log(f"{rows:,} rows: reconcile {result['ids_per_second']:,.0f} ids/s end to end, peak RSS {rss:.0f} MiB")
    return result


def report(results: list[dict]) -> str:
    lines = ["| ids | compared | deleted | indexed | wall s | CPU s | ids/s (end to end) | ids/s (in the run) "
             "| peak RSS MiB |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['rows']:,} | {r['compared']:,} | {r['deleted']:,} | {r['indexed']:,} | {r['wall']:.1f} "
                     f"| {r['cpu']:.1f} | {r['ids_per_second']:,.0f} | {r['in_run']:,.0f} | {r['rss']:.1f} |")
    lines += ["", f"Targets: >= {TARGET_IDS_PER_S:,} ids/s: "
              + ", ".join(f"{size_label(r['rows'])} {'met' if r['ids_per_second'] >= TARGET_IDS_PER_S else 'missed'}"
                          for r in results)]
    big, small = max(results, key=lambda r: r["rows"]), min(results, key=lambda r: r["rows"])
    lines.append(f"peak RSS at {size_label(big['rows'])} <= {TARGET_RSS_MIB} MiB: "
                 f"{'met' if big['rss'] <= TARGET_RSS_MIB else 'missed'} ({big['rss']:.1f} MiB)")
    if big is not small:
        growth = big["rss"] / small["rss"]
        lines.append(f"RSS({size_label(big['rows'])}) <= {TARGET_RSS_GROWTH} x RSS({size_label(small['rows'])}): "
                     f"{'met' if growth <= TARGET_RSS_GROWTH else 'missed'} ({growth:.2f} x)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,5000000", help="row counts, comma-separated")
    parser.add_argument("--cli", action="store_true", help="time `python -m indexer.cli reconcile`")
    parser.add_argument("--append", type=Path, help="also append the table, with the machine and date, to this file")
    args = parser.parse_args()
    url = f"http://127.0.0.1:{os.environ.get('ENGINE_PORT', '9200')}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("INDEXER_URL", None)
    with tempfile.TemporaryDirectory(prefix="reconcile-bench-") as folder:
        results = [measure(int(n), url, Path(folder), env, args.cli) for n in args.sizes.split(",")]
    table = report(results)
    print(table)
    if args.append:
        import datetime as dt
        import platform

        when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        with args.append.open("a", encoding="utf-8") as fh:
            fh.write(f"\n## Reconcile (issue 11)\n\n{when}; {platform.machine()}, {os.cpu_count()} cores, "
                     f"Python {platform.python_version()}; SQLite, the OpenSearch node of this run, "
                     f"`python -m indexer.cli reconcile` as a child process.\n\n{table}\n")


if __name__ == "__main__":
    main()
