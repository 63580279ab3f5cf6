"""Generate the sensors demo table (like the recipe's BGS.DIC_SEN_SENSOR) in SQLite or PostgreSQL.

    python demo/generate.py demo/sensors.db --rows 100000
    python demo/generate.py --postgres "host=127.0.0.1 port=54329 dbname=indexer_test user=indexer" --rows 1000000

Rows are deterministic for a given count and seed; the PostgreSQL password comes
from PGPASSWORD. Columns: code (key), description, site, value, date_updated
(ISO text in SQLite, timestamp in PostgreSQL), is_deleted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import sqlite3
from pathlib import Path
from typing import Iterator

SITES = ["KEYWORTH", "EDINBURGH", "WALLINGFORD", "CARDIFF", "BELFAST", "EXETER", "NOTTINGHAM", "LYELL"]
KINDS = ["piezometer", "rain gauge", "thermistor", "tiltmeter", "seismometer", "flow meter", "barometer"]
EPOCH = dt.datetime(2020, 1, 1)


def sensor_rows(n: int, seed: int = 42) -> Iterator[tuple]:
    rng = random.Random(seed)
    for i in range(1, n + 1):
        kind = rng.choice(KINDS)
        site = rng.choice(SITES)
        yield (
            f"SEN{i:07d}",
            f"{kind} {i} at {site.title()} borehole {rng.randint(1, 400)}",
            site,
            round(rng.uniform(-50, 500), 3),
            EPOCH + dt.timedelta(seconds=rng.randint(0, 5 * 365 * 86400)),
            0,
        )


def write_sqlite(path: Path, n: int, seed: int = 42) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    conn = sqlite3.connect(tmp)
    conn.execute(
        "CREATE TABLE sensors (code TEXT PRIMARY KEY, description TEXT, site TEXT, value REAL, "
        "date_updated TEXT NOT NULL, is_deleted INTEGER NOT NULL DEFAULT 0)"
    )
    conn.executemany(
        "INSERT INTO sensors VALUES (?, ?, ?, ?, ?, ?)",
        ((c, d, s, v, t.strftime("%Y-%m-%d %H:%M:%S"), x) for c, d, s, v, t, x in sensor_rows(n, seed)),
    )
    conn.execute("CREATE INDEX sensors_date_updated ON sensors (date_updated)")
    conn.commit()
    conn.close()
    tmp.replace(path)  # a half-written demo database never looks complete


def write_postgres(dsn: str, n: int, seed: int = 42, table: str = "sensors") -> None:
    import io

    import psycopg2

    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {table}")
        cur.execute(
            f"CREATE TABLE {table} (code TEXT PRIMARY KEY, description TEXT, site TEXT, value DOUBLE PRECISION, "
            "date_updated TIMESTAMP NOT NULL, is_deleted BOOLEAN NOT NULL DEFAULT FALSE)"
        )
        buf = io.StringIO()
        for c, d, s, v, t, x in sensor_rows(n, seed):
            buf.write(f"{c}\t{d}\t{s}\t{v}\t{t.isoformat(sep=' ')}\t{'t' if x else 'f'}\n")
        buf.seek(0)
        cur.copy_expert(f"COPY {table} FROM STDIN", buf)
        cur.execute(f"CREATE INDEX {table}_date_updated ON {table} (date_updated)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sqlite", nargs="?", type=Path, help="SQLite file to (re)create")
    parser.add_argument("--postgres", metavar="DSN", help="libpq connection info (password from PGPASSWORD)")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    if args.postgres:
        write_postgres(args.postgres, args.rows, args.seed)
        print(f"generated {args.rows} sensor rows in PostgreSQL table sensors")
    if args.sqlite:
        write_sqlite(args.sqlite, args.rows, args.seed)
        print(f"generated {args.rows} sensor rows in {args.sqlite}")
    if not (args.sqlite or args.postgres):
        parser.error("name a SQLite file or --postgres")


if __name__ == "__main__":
    main()
