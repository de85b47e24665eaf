"""Emberline's trend job in Apache Flink (PyFlink DataStream API), for benches/peers/run.

The job reads readings (device_id, probe_id, event_time ms, temperature_c; an empty
temperature is an unplugged probe) from a CSV file through a bounded FileSource, keys them
by (device, probe) and, in a KeyedProcessFunction that keeps each probe's window of
(event time, °C) in Flink keyed state, computes after every reading what
processors/src/trend.rs (`TrendState::update`) computes:

  * the window: the readings of the last 300 s of event time, ending at the newest reading
    seen (a reading at or before newest - 300 s is too late: dropped, no output), at most
    2 048, ordered by event time (a late reading is inserted in place, after equal times);
  * smoothed_c: the mean of the window's readings of the last 60 s (time > newest - 60 s),
    without the single highest and lowest when there are five or more;
  * rate_c_per_min: the least-squares slope over the whole window, °C per minute, once the
    window spans at least 30 s with three readings or more (else null);
  * min_c, max_c, window_ms (newest - oldest), samples;
  * an unplugged reading (no temperature, or not finite) empties the window and has no
    output.

So one trend per plugged reading, as Emberline's derived `trends` topic has. The
arithmetic is Emberline's, in the same order (integer time offsets from the window's
oldest reading, two-pass centred sums, plain left-to-right float sums): on the same
readings the figures come out bit for bit the same.

Modes:

  bench (default): the trends go to a discarding sink; each process subtask counts what it
      emitted. Prints one JSON line: readings, trends, the job's net runtime
      (JobExecutionResult.get_net_runtime: from the job's start to its end, including the
      start of the Python workers) and this process's wall time (including the Python
      start and the JVM's).
  --check: the same job; its trends are collected and compared with an independent
      from-scratch computation (the textbook least-squares formula, recomputing the whole
      window for each reading) to 1e-9, and, with --emberline-trends CSV, with Emberline's
      own `trends` table for the same readings. Exits 1 on any difference.

Usage: python flink_trend.py --input CSV|DIR [--parallelism 2] [--readings N]
           [--expect-trends N] [--execution-mode process|thread] [--conf KEY=VALUE]...
           [--check [--emberline-trends trends.csv]]
"""

import argparse
import csv
import json
import math
import os
import sys
import tempfile
import time
from bisect import bisect_right
from operator import mul

STARTED = time.perf_counter()

# processors/src/trend.rs
WINDOW_MS = 300_000
SMOOTHING_MS = 60_000
MIN_RATE_SPAN_MS = 30_000
MAX_SAMPLES = 2_048

# The readings file: written by benches/peers/run from `emberline sql`.
COLUMNS = ["device_id", "probe_id", "event_time", "temperature_c"]
TREND_FIELDS = ["device_id", "probe_id", "event_time", "temperature_c", "smoothed_c",
                "rate_c_per_min", "min_c", "max_c", "window_ms", "samples"]


def update(window, event_time, temp):
    """Applies one reading to `window` ([times], [values], oldest first; changed in place)
    and returns the figures after it — (smoothed_c, rate_c_per_min or None, min_c, max_c,
    window_ms, samples) — or None (unplugged, or too late). TrendState::update."""
    times, values = window
    if temp is None or not math.isfinite(temp):
        times.clear()
        values.clear()
        return None
    newest = max(times[-1], event_time) if times else event_time
    if event_time <= newest - WINDOW_MS:
        return None
    at = bisect_right(times, event_time)
    times.insert(at, event_time)
    values.insert(at, temp)
    # Readings at or before newest - window, and the oldest past MAX_SAMPLES.
    drop = max(bisect_right(times, newest - WINDOW_MS), len(times) - MAX_SAMPLES)
    if drop > 0:
        del times[:drop]
        del values[:drop]

    n = len(values)
    min_c = min(values)
    max_c = max(values)
    recent = values[bisect_right(times, newest - SMOOTHING_MS):]
    k = len(recent)
    if k >= 5:
        smoothed = (sum(recent) - min(recent) - max(recent)) / (k - 2)
    else:
        smoothed = sum(recent) / max(k, 1)
    first = times[0]
    span = newest - first
    rate = None
    if span >= MIN_RATE_SPAN_MS and n >= 3:
        # slope_per_ms: the offsets are integers, so their sum is exact either way.
        mx = (sum(times) - first * n) / n
        my = sum(values) / n
        dx = [(t - first) - mx for t in times]
        sxx = sum(map(mul, dx, dx))
        if sxx > 0.0:
            rate = sum(map(mul, dx, [v - my for v in values])) / sxx * 60_000.0
    return smoothed, rate, min_c, max_c, span, n


# --- The independent computation (--check) --------------------------------------------------

def oracle(readings):
    """For each reading of one probe (time, temp or None), the figures recomputed from
    scratch over every reading kept, with the textbook slope (n Σxy - Σx Σy) /
    (n Σx² - (Σx)²) on times and values taken from the window's first reading. The same as
    the oracle in processors/src/trend.rs's tests."""
    kept = []
    out = []
    for t, v in readings:
        if v is None or not math.isfinite(v):
            kept = []
            out.append(None)
            continue
        newest = max([k[0] for k in kept] + [t])
        if t <= newest - WINDOW_MS:
            out.append(None)
            continue
        kept.append((t, v))
        kept.sort(key=lambda k: k[0])  # stable: arrival order among equal times
        kept = [k for k in kept if k[0] > newest - WINDOW_MS][-MAX_SAMPLES:]
        vals = [k[1] for k in kept]
        recent = sorted(k[1] for k in kept if k[0] > newest - SMOOTHING_MS)
        if len(recent) >= 5:
            inner = recent[1:-1]
            smoothed = math.fsum(inner) / len(inner)
        else:
            smoothed = math.fsum(recent) / len(recent)
        span = newest - kept[0][0]
        rate = None
        if span >= MIN_RATE_SPAN_MS and len(kept) >= 3:
            t0, v0 = kept[0]
            n = len(kept)
            xs = [k[0] - t0 for k in kept]
            ys = [k[1] - v0 for k in kept]
            sx, sy = sum(xs), math.fsum(ys)
            sxx = sum(x * x for x in xs)
            sxy = math.fsum(x * y for x, y in zip(xs, ys))
            den = n * sxx - sx * sx
            if den > 0:
                rate = (n * sxy - sx * sy) / den * 60_000.0
        out.append((smoothed, rate, min(vals), max(vals), span, len(kept)))
    return out


def near(a, b):
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= 1e-9 * (1.0 + max(abs(a), abs(b)))


def same(a, b):
    """The figures agree: exact for min, max, span and count, 1e-9 for the means and rates
    (as processors/src/trend.rs's tests compare them)."""
    return (near(a[0], b[0]) and near(a[1], b[1]) and a[2] == b[2] and a[3] == b[3]
            and a[4] == b[4] and a[5] == b[5])


def read_readings(path):
    with open(path, newline="") as f:
        rows = csv.reader(f)
        header = next(rows)
        if header != COLUMNS:
            sys.exit(f"{path}: columns {header}, expected {COLUMNS}")
        return [(d, p, int(t), float(v) if v != "" else None) for d, p, t, v in rows]


# --- The Flink job ----------------------------------------------------------------------------

def build_job(args):
    from pyflink.common import Configuration, Row, Types, WatermarkStrategy
    from pyflink.datastream import KeyedProcessFunction, RuntimeExecutionMode
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.datastream.connectors.file_system import FileSource
    from pyflink.datastream.formats.csv import CsvReaderFormat, CsvSchema
    from pyflink.datastream.state import ValueStateDescriptor
    from pyflink.table import DataTypes

    # Run locally (a MiniCluster), PyFlink's default is to run every subtask's Python code in
    # this one client process ("loopback"), where they share one interpreter lock. A cluster
    # runs a Python worker process per subtask: so does this job.
    os.environ.setdefault("_python_worker_execution_mode", "process")
    if args.execution_mode == "thread":
        # The interpreter embedded in the JVM does not know this venv: it finds pyflink (and
        # pemja) through PYTHONPATH, which the JVM started from here inherits.
        import pyflink
        site = os.path.dirname(os.path.dirname(os.path.abspath(pyflink.__file__)))
        os.environ["PYTHONPATH"] = os.pathsep.join(
            p for p in (site, os.environ.get("PYTHONPATH")) if p)
    config = Configuration()
    # The Python workers run this venv's interpreter.
    config.set_string("python.executable", sys.executable)
    config.set_string("python.client.executable", sys.executable)
    config.set_string("python.execution-mode", args.execution_mode)
    # Every probe's window stays in the Python workers' state cache (the default, 1 000
    # keys, is fewer than a subtask's probes: each miss would fetch and unpickle a window
    # from the JVM).
    config.set_string("python.state.cache-size", str(args.state_cache))
    # Process mode sends a bundle of records to a Python worker and, when it ends, writes
    # back the state of every key the bundle touched. The readings go round all the probes
    # every tick, so a bundle closed after the defaults (1 000 records or 1 s) writes back
    # most windows for a reading or a few each: bundles of up to 100 000 records or 10 s
    # write them back less often (measured faster here; a throughput setting, at the cost
    # of latency).
    config.set_string("python.fn-execution.bundle.size", "100000")
    config.set_string("python.fn-execution.bundle.time", "10000")
    for setting in args.conf:
        key, _, value = setting.partition("=")
        config.set_string(key, value)
    env = StreamExecutionEnvironment.get_execution_environment(config)
    env.set_runtime_mode(RuntimeExecutionMode.STREAMING)
    env.set_parallelism(args.parallelism)

    schema = (CsvSchema.builder()
              .add_string_column("device_id")
              .add_string_column("probe_id")
              .add_number_column("event_time", number_type=DataTypes.BIGINT())
              .add_number_column("temperature_c", number_type=DataTypes.DOUBLE())
              .set_use_header()
              .set_null_value("")
              .build())
    # A file is read by one source subtask: benches/peers/run splits the readings into a
    # file per subtask (by device, so each probe's readings stay in order in one file) and
    # passes their directory.
    source = FileSource.for_record_stream_format(
        CsvReaderFormat.for_schema(schema), os.path.abspath(args.input)).build()
    readings = env.from_source(source, WatermarkStrategy.no_watermarks(), "readings")

    out_type = Types.ROW_NAMED(
        TREND_FIELDS,
        [Types.STRING(), Types.STRING(), Types.LONG(), Types.DOUBLE(), Types.DOUBLE(),
         Types.DOUBLE(), Types.DOUBLE(), Types.DOUBLE(), Types.LONG(), Types.INT()])
    counts_dir = args.counts_dir

    class Trend(KeyedProcessFunction):
        """One probe's window in keyed state; a trend per plugged reading."""

        def open(self, runtime_context):
            self.window = runtime_context.get_state(
                ValueStateDescriptor("window", Types.PICKLED_BYTE_ARRAY()))
            self.emitted = 0

        def process_element(self, r, ctx):
            window = self.window.value()
            if window is None:
                window = ([], [])
            figures = update(window, r[2], r[3])
            self.window.update(window)
            if figures is not None:
                self.emitted += 1
                yield Row(r[0], r[1], r[2], r[3], *figures)

        def close(self):
            if counts_dir:
                path = os.path.join(counts_dir, f"{os.getpid()}.{id(self)}")
                with open(path, "w") as f:
                    f.write(str(self.emitted))

    # The CSV format yields Flink's internal rows, which a Python key selector cannot take:
    # one Python map makes them rows (it runs in the same Python operator as the key
    # selector).
    in_type = Types.ROW_NAMED(COLUMNS, [Types.STRING(), Types.STRING(), Types.LONG(),
                                        Types.DOUBLE()])
    trends = (readings
              .map(lambda r: r, output_type=in_type)
              .key_by(lambda r: r[0] + "/" + r[1], key_type=Types.STRING())
              .process(Trend(), output_type=out_type)
              .name("trend"))
    return env, trends


def bench(args):
    from pyflink.datastream.connectors import Sink

    counts = tempfile.mkdtemp(prefix="flink-trend-counts-")
    args.counts_dir = counts
    env, trends = build_job(args)
    trends.sink_to(Sink(
        "org.apache.flink.streaming.api.functions.sink.v2.DiscardingSink")).name("discard")
    result = env.execute("emberline-trend")
    net_s = result.get_net_runtime() / 1000.0
    emitted = 0
    for name in os.listdir(counts):
        with open(os.path.join(counts, name)) as f:
            emitted += int(f.read())
        os.remove(os.path.join(counts, name))
    os.rmdir(counts)
    figures = {
        "readings": args.readings,
        "trends": emitted,
        "net_runtime_s": net_s,
        "readings_per_s": args.readings / net_s if args.readings else None,
        "wall_s": time.perf_counter() - STARTED,
        "parallelism": args.parallelism,
        "execution_mode": args.execution_mode,
    }
    print(json.dumps(figures))
    if args.expect_trends is not None and emitted != args.expect_trends:
        sys.exit(f"the job emitted {emitted} trends, expected {args.expect_trends}")


def check(args):
    args.counts_dir = None
    env, trends = build_job(args)
    got = {}
    with trends.execute_and_collect("emberline-trend-check") as results:
        for r in results:
            key = (r[0], r[1])
            got.setdefault(key, []).append(
                (r[2], r[3], (r[4], r[5], r[6], r[7], r[8], r[9])))
    readings = read_readings(args.input)
    probes = {}
    for d, p, t, v in readings:
        probes.setdefault((d, p), []).append((t, v))
    failures = 0
    compared = 0
    expected_total = 0
    for key, rows in probes.items():
        want = [(t, v, f) for (t, v), f in zip(rows, oracle(rows)) if f is not None]
        expected_total += len(want)
        have = got.get(key, [])
        if len(have) != len(want):
            print(f"{key}: {len(have)} trends from Flink, {len(want)} expected")
            failures += 1
            continue
        for (t, v, f), (ht, hv, hf) in zip(want, have):
            compared += 1
            if (t, v) != (ht, hv) or not same(f, hf):
                failures += 1
                if failures <= 10:
                    print(f"{key} at {t}: Flink {hf}, from scratch {f}")
    extra = set(got) - set(probes)
    if extra:
        print(f"trends for probes with no readings: {sorted(extra)[:5]}")
        failures += 1
    print(f"check: {len(readings)} readings, {len(probes)} probes, {compared} trends "
          f"compared with the from-scratch computation: "
          f"{'agree' if failures == 0 else f'{failures} differ'}")

    if args.emberline_trends:
        emberline = {}
        with open(args.emberline_trends, newline="") as f:
            rows = csv.DictReader(f)
            for r in rows:
                fig = (float(r["smoothed_c"]),
                       float(r["rate_c_per_min"]) if r["rate_c_per_min"] != "" else None,
                       float(r["min_c"]), float(r["max_c"]), int(r["window_ms"]),
                       int(r["samples"]))
                emberline[(r["device_id"], r["probe_id"], int(r["event_time"]))] = fig
        mine = {(k[0], k[1], t): f for k, rows in got.items() for t, _, f in rows}
        differ = [k for k in mine if k not in emberline or not same(mine[k], emberline[k])]
        missing = [k for k in emberline if k not in mine]
        bitwise = sum(1 for k in mine if k in emberline and mine[k] == emberline[k])
        worst = 0.0
        for k in mine:
            if k in emberline:
                for a, b in ((mine[k][0], emberline[k][0]), (mine[k][1], emberline[k][1])):
                    if a is not None and b is not None:
                        worst = max(worst, abs(a - b))
        print(f"check: {len(mine)} Flink trends against Emberline's {len(emberline)} "
              f"(its `trends` table): {len(differ)} differ, {len(missing)} missing, "
              f"{bitwise} bit for bit equal, largest difference {worst:.3g}")
        for k in (differ + missing)[:10]:
            print(f"  {k}: Flink {mine.get(k)}, Emberline {emberline.get(k)}")
        failures += len(differ) + len(missing)
    sys.exit(1 if failures else 0)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--input", required=True,
                   help="the readings CSV, or a directory of them (each with the header)")
    p.add_argument("--parallelism", type=int, default=2)
    p.add_argument("--execution-mode", choices=["process", "thread"], default="process",
                   help="where the Python functions run: Python worker processes (Beam), "
                        "or embedded in the JVM (pemja)")
    p.add_argument("--state-cache", type=int, default=100_000,
                   help="python.state.cache-size: keys whose state a Python worker caches")
    p.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE",
                   help="more Flink configuration (repeatable)")
    p.add_argument("--readings", type=int, default=None,
                   help="readings in the input (for the rate; counted when not given)")
    p.add_argument("--expect-trends", type=int, default=None,
                   help="fail unless the job emits this many trends")
    p.add_argument("--check", action="store_true",
                   help="compare the job's trends with a from-scratch computation")
    p.add_argument("--emberline-trends", default=None,
                   help="with --check: Emberline's trends for the same readings (CSV)")
    args = p.parse_args()
    if args.check:
        check(args)
    else:
        if args.readings is None:
            files = ([os.path.join(args.input, n) for n in sorted(os.listdir(args.input))]
                     if os.path.isdir(args.input) else [args.input])
            args.readings = 0
            for name in files:
                with open(name) as f:
                    args.readings += sum(1 for _ in f) - 1
        bench(args)


if __name__ == "__main__":
    main()
