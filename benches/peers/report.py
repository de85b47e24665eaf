"""The table benches/peers/run prints: the runs of each side from its results file
(tab-separated: side, run, readings, seconds, readings/s, wall seconds, loaded), their
medians and ranges, and the ratio Emberline / Flink.

Usage: python report.py RESULTS [--json OUT]
"""

import argparse
import json
import statistics


def k(x):
    """A rate in thousands, as the benches README writes them."""
    return f"{x / 1000:.1f} k"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("results")
    p.add_argument("--json", default=None)
    p.add_argument("--summary", default=None, help="lines to print above the table")
    args = p.parse_args()

    runs = {"emberline": [], "flink": []}
    with open(args.results) as f:
        for line in f:
            side, run, readings, seconds, rate, wall, loaded = line.rstrip("\n").split("\t")
            runs[side].append({"run": int(run), "readings": int(readings),
                               "seconds": float(seconds), "readings_per_s": float(rate),
                               "wall_s": float(wall), "loaded": loaded == "1"})
    if not runs["emberline"] or not runs["flink"]:
        raise SystemExit(f"{args.results}: no runs of one side")

    def figures(side):
        rates = [r["readings_per_s"] for r in runs[side]]
        walls = [r["wall_s"] for r in runs[side]]
        return {"median": statistics.median(rates), "low": min(rates), "high": max(rates),
                "wall_median": statistics.median(walls),
                "loaded": sum(r["loaded"] for r in runs[side]), "runs": runs[side]}

    e, f = figures("emberline"), figures("flink")
    ratio = e["median"] / f["median"]
    readings = runs["emberline"][0]["readings"]

    if args.summary:
        with open(args.summary) as s:
            print(s.read().rstrip())
        print()
    print(f"{readings} readings, {len(e['runs'])} runs of each side, alternating:")
    for side in ("emberline", "flink"):
        for r in runs[side]:
            note = " (taken under load)" if r["loaded"] else ""
            print(f"  {side:9} run {r['run']}: {r['readings_per_s']:>10.0f} readings/s "
                  f"({r['seconds']:.2f} s; process wall {r['wall_s']:.2f} s){note}")
    print()
    rows = [
        ("", "Emberline (e2e processing)", "Flink (PyFlink job)"),
        ("readings/s, median", k(e["median"]), k(f["median"])),
        ("range", f"{k(e['low'])} – {k(e['high'])}", f"{k(f['low'])} – {k(f['high'])}"),
        ("whole process, wall time, median", f"{e['wall_median']:.1f} s (with ingest)",
         f"{f['wall_median']:.1f} s (with Python, JVM start)"),
        ("ratio Emberline / Flink", f"{ratio:.1f}×", ""),
        ("reads", "its log (LZ4 batches), decodes Avro", "a CSV file (Flink's CSV format)"),
        ("state", "in memory; persisted with each round", "in memory (heap backend), no checkpoints"),
        ("writes", "a derived trend record per reading, durably; "
                   "history and latest projections, durably", "nothing (a discarding sink)"),
    ]
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    for i, r in enumerate(rows):
        print("| " + " | ".join(c.ljust(width[j]) for j, c in enumerate(r)) + " |")
        if i == 0:
            print("|" + "|".join("-" * (w + 2) for w in width) + "|")
    loaded = e["loaded"] + f["loaded"]
    if loaded:
        print(f"\n{loaded} run(s) were taken under load (the machine was not quiet when they "
              "started: see above).")
    print("\nEmberline: readings / the e2e driver's processing time (log read, Avro decode, "
          "trend, derived append, projection writes).\nFlink: readings / the job's net "
          "runtime (JobExecutionResult.get_net_runtime: from the job's start to its end, "
          "including the start of its Python workers).\nWhole process: e2e also simulates "
          "and appends the readings first; the Flink process starts Python, the JVM and a "
          "local cluster.")
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"emberline": e, "flink": f, "ratio": ratio}, out, indent=2)


if __name__ == "__main__":
    main()
