// How long the chart's data preparation takes at the size the dashboard must handle:
// 8 probes × 12 h of 1 s readings (345 600 points). Prints figures, asserts nothing.
// Run: npm run bench
import { test } from "vitest";
import { DeviceSeries } from "../src/series";

function cook(probes: number, seconds: number, skew = 0): DeviceSeries {
  const d = new DeviceSeries();
  const start = 1_790_000_000_000;
  for (let p = 0; p < probes; p++) {
    const s = d.probe(p === 0 ? "pit" : `meat-${p}`);
    for (let i = 0; i < seconds; i++) s.add(start + i * 1_000 + p * skew, 20 + i / 600);
  }
  return d;
}

function measure(name: string, runs: number, f: () => void): void {
  f();
  const t0 = performance.now();
  for (let i = 0; i < runs; i++) f();
  const ms = (performance.now() - t0) / runs;
  console.log(`MEASURED ${name}: ${ms.toFixed(2)} ms`);
}

test("8 probes × 12 h at 1 s", () => {
  const t0 = performance.now();
  const d = cook(8, 12 * 3_600);
  console.log(`MEASURED filling 345 600 points in order: ${(performance.now() - t0).toFixed(0)} ms`);
  measure("aligning all of it for the chart (probes report together)", 10, () => void d.aligned());
  const skewed = cook(8, 12 * 3_600, 7);
  measure("aligning all of it for the chart (probes report apart)", 10, () => void skewed.aligned());
  let t = 1_790_000_000_000 + 12 * 3_600 * 1_000;
  measure("one live reading per probe", 1_000, () => {
    t += 1_000;
    for (const id of d.ids()) d.probe(id).add(t, 50);
  });
  skewed.alignedAll();
  let u = 1_790_000_000_000 + 12 * 3_600 * 1_000;
  measure("a chart update after one live reading per probe (probes report apart, 12 h shown)", 200, () => {
    u += 1_000;
    skewed.ids().forEach((id, p) => skewed.probe(id).add(u + p * 7, 50));
    skewed.alignedAll();
  });
});
