"""The analytics benchmark's DuckDB side and its report (run by `benches/analytics/run`).

Runs the benchmark's queries (the `*.sql` files beside this one, the same text Emberline ran)
with DuckDB over the Parquet files Emberline exported, `--runs` times each, and checks the
results against Emberline's (its CSV outputs): the same number of rows for every query and,
for the daily query, the same means and maxima within 1e-6. A difference fails the run.

Then prints the report: generation, rebuild, export (wall time and peak RSS), the full-scan
read rate, and per query the median of Emberline's runs (from `--times`, one line per run:
label, seconds, peak RSS KiB), DuckDB's median and their ratio.
"""

import argparse
import csv
import json
import math
import statistics
import sys
import time
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

# (label, file, title); the label names Emberline's runs in the times file and its CSV output.
QUERIES = [
    ("daily", "daily.sql", "(a) per-device daily mean/max"),
    ("stall", "stall.sql", "(b) stall time per cook (window)"),
    ("scan", "scan.sql", "(c) one device, one hour"),
]
# Full scans: how fast each engine reads the readings at all.
SCANS = [
    ("count", "SELECT count(*) AS n FROM probe_readings", "full scan: count(*)"),
    (
        "sum",
        "SELECT sum(temperature_c) AS s FROM probe_readings",
        "full scan: sum(temperature_c)",
    ),
]
GOAL_RATIO = 1.5
TOLERANCE = 1e-6


def fail(message):
    print(f"FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def read_times(path):
    """Per label, the list of (seconds, peak KiB) of its runs."""
    times = {}
    for line in Path(path).read_text().splitlines():
        label, seconds, kib = line.split("\t")
        times.setdefault(label, []).append((float(seconds), int(kib)))
    return times


def read_csv(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def number(text):
    return None if text == "" else float(text)


def close(a, b):
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=0.0, abs_tol=TOLERANCE)


def check_daily(emberline_csv, duck_rows):
    header, rows = read_csv(emberline_csv)
    want = ["device_id", "probe_id", "day", "mean_c", "max_c", "readings"]
    if header != want:
        fail(f"daily: Emberline's columns are {header}, expected {want}")
    ours = {(r[0], r[1], r[2]): (number(r[3]), number(r[4]), int(r[5])) for r in rows}
    theirs = {
        (d, p, str(day)): (mean, mx, n) for d, p, day, mean, mx, n in duck_rows
    }
    if ours.keys() != theirs.keys():
        only_ours = sorted(ours.keys() - theirs.keys())[:3]
        only_theirs = sorted(theirs.keys() - ours.keys())[:3]
        fail(
            f"daily: the groups differ (only Emberline: {only_ours}, "
            f"only DuckDB: {only_theirs})"
        )
    for key, (mean, mx, n) in ours.items():
        d_mean, d_max, d_n = theirs[key]
        if n != d_n or not close(mean, d_mean) or not close(mx, d_max):
            fail(
                f"daily {key}: Emberline mean {mean} max {mx} n {n}, "
                f"DuckDB mean {d_mean} max {d_max} n {d_n}"
            )


def stall_total(emberline_csv, duck_rows):
    _, rows = read_csv(emberline_csv)
    ours = sum(number(r[2]) or 0.0 for r in rows)
    theirs = sum(r[2] or 0.0 for r in duck_rows)
    return ours, theirs


def main():
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", required=True, help="the run's directory (exports, results)")
    ap.add_argument("--times", required=True, help="Emberline's measured runs")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--summary", help="the generator's output, to repeat in the report")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()

    work = Path(args.work)
    readings_file = work / "readings.parquet"
    commands_file = work / "cook_commands.parquet"
    times = read_times(args.times)
    readings = pq.ParquetFile(readings_file).metadata.num_rows

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(
        f"CREATE VIEW probe_readings AS SELECT * FROM read_parquet('{readings_file}')"
    )
    con.execute(
        f"CREATE VIEW cook_commands AS SELECT * FROM read_parquet('{commands_file}')"
    )

    def duck(sql):
        seconds = []
        rows = None
        for _ in range(args.runs):
            started = time.perf_counter()
            rows = con.execute(sql).fetchall()
            seconds.append(time.perf_counter() - started)
        return statistics.median(seconds), rows

    def ours(label):
        runs = times.get(label)
        if not runs:
            fail(f"no Emberline runs of {label} in {args.times}")
        return statistics.median(s for s, _ in runs), runs

    table = []
    figures = {"readings": readings, "queries": {}}
    for label, file, title in QUERIES:
        sql = (here / file).read_text()
        d_s, d_rows = duck(sql)
        e_s, _ = ours(label)
        result = work / "results" / f"{label}.csv"
        _, e_rows = read_csv(result)
        if len(e_rows) != len(d_rows):
            fail(f"{label}: Emberline returned {len(e_rows)} rows, DuckDB {len(d_rows)}")
        if label == "daily":
            check_daily(result, d_rows)
        note = f"{len(e_rows)} rows"
        if label == "stall":
            e_total, d_total = stall_total(result, d_rows)
            note += f"; stall minutes summed: {e_total:.1f} vs {d_total:.1f}"
        table.append((title, e_s, d_s, note))
        figures["queries"][label] = {"emberline_s": e_s, "duckdb_s": d_s, "rows": len(e_rows)}
    scans = []
    for label, sql, title in SCANS:
        d_s, d_rows = duck(sql)
        e_s, _ = ours(label)
        _, e_rows = read_csv(work / "results" / f"{label}.csv")
        if label == "count" and int(e_rows[0][0]) != d_rows[0][0]:
            fail(f"count(*): Emberline {e_rows[0][0]}, DuckDB {d_rows[0][0]}")
        if label == "sum" and not math.isclose(
            float(e_rows[0][0]), d_rows[0][0], rel_tol=1e-9
        ):
            fail(f"sum(temperature_c): Emberline {e_rows[0][0]}, DuckDB {d_rows[0][0]}")
        scans.append((title, e_s, d_s, f"{readings / e_s / 1e6:.2f} M readings/s"))
        figures["queries"][label] = {"emberline_s": e_s, "duckdb_s": d_s}
    if readings != int(
        con.execute("SELECT count(*) FROM probe_readings").fetchone()[0]
    ):
        fail("the Parquet metadata and DuckDB disagree on the row count")

    out = []
    if args.summary:
        out.append(Path(args.summary).read_text().rstrip())
    n = args.runs
    first = times.get("rebuild-first")
    if first:
        out.append(
            f"rebuild, first (derived topics empty, the processors append them): "
            f"{first[0][0]:.1f} s"
        )
    rb_s, _ = ours("rebuild")
    out.append(
        f"rebuild: {rb_s:.1f} s median of {n} ({readings / rb_s:,.0f} readings/s; "
        f"goal <= 10 s for 10 M)"
    )
    ex_s, ex_runs = ours("export")
    ex_peak = max(k for _, k in ex_runs) / 1024
    size = readings_file.stat().st_size / 2**20
    out.append(
        f"export SELECT * FROM probe_readings to Parquet: {ex_s:.1f} s median of {n} "
        f"({readings / ex_s:,.0f} rows/s, {size:.0f} MiB file); peak RSS {ex_peak:.0f} MiB "
        f"(highest of {n}; goal < 200 MiB)"
    )
    figures.update(
        rebuild_s=rb_s,
        rebuild_first_s=first[0][0] if first else None,
        export_s=ex_s,
        export_peak_mib=ex_peak,
        parquet_mib=size,
    )
    start = times.get("startup")
    if start:
        out.append(
            f"`emberline sql \"SELECT 1\"` (process start, open the log, the registry): "
            f"{statistics.median(s for s, _ in start):.3f} s median of {n}"
        )
    out.append("")
    out.append("| query | Emberline s | DuckDB s | ratio | |")
    out.append("|---|---|---|---|---|")
    for title, e_s, d_s, note in table + scans:
        ratio = e_s / d_s
        mark = "" if ratio <= GOAL_RATIO else " (goal 1.5x missed)"
        out.append(f"| {title} | {e_s:.3f} | {d_s:.3f} | {ratio:.1f}x{mark} | {note} |")
    out.append("")
    out.append(
        f"medians of {n} runs; Emberline's times are whole `emberline sql` processes "
        f"(start, open the log, plan, run, write CSV); DuckDB's are queries on one open "
        f"connection over the Parquet export"
    )
    print("\n".join(out))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
