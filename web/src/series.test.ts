import { describe, expect, it } from "vitest";
import { DeviceSeries, Series, historyStepMs } from "./series";

describe("historyStepMs", () => {
  it("reads every point up to an hour and steps beyond", () => {
    expect(historyStepMs(30 * 60_000)).toBe(0);
    expect(historyStepMs(3_600_000)).toBe(0);
    expect(historyStepMs(3 * 3_600_000)).toBe(60_000);
    expect(historyStepMs(12 * 3_600_000)).toBe(60_000);
    expect(historyStepMs(Number.POSITIVE_INFINITY)).toBe(60_000);
    expect(historyStepMs(7 * 24 * 3_600_000)).toBe(600_000);
  });
});

describe("Series", () => {
  it("keeps points sorted and refuses a time twice", () => {
    const s = new Series();
    expect(s.add(3, 30)).toBe(true);
    expect(s.add(1, 10)).toBe(true);
    expect(s.add(2, 20)).toBe(true);
    expect(s.add(2, 99)).toBe(false);
    expect(s.add(4, null)).toBe(true);
    expect(s.times).toEqual([1, 2, 3, 4]);
    expect(s.values).toEqual([10, 20, 30, null]);
  });

  it("matches a sort-and-dedupe of random insertions", () => {
    for (let round = 0; round < 50; round++) {
      const s = new Series();
      const seen = new Map<number, number>();
      for (let i = 0; i < 200; i++) {
        const t = Math.floor(Math.random() * 100);
        if (!seen.has(t)) seen.set(t, i);
        s.add(t, seen.get(t) === i ? i : -1);
      }
      const expected = [...seen.keys()].sort((a, b) => a - b);
      expect(s.times).toEqual(expected);
      expect(s.values).toEqual(expected.map((t) => seen.get(t)));
    }
  });
});

describe("DeviceSeries", () => {
  it("aligns probes on the union of their times, pit first", () => {
    const d = new DeviceSeries();
    d.probe("meat-1").add(2_000, 50);
    d.probe("pit").add(1_000, 110);
    d.probe("pit").add(2_000, 111);
    expect(d.ids()).toEqual(["pit", "meat-1"]);
    expect(d.aligned()).toEqual([[1, 2], [110, 111], [null, 50]]);
    expect(d.aligned(1_500)).toEqual([[2], [111], [50]]);
  });
});

describe("DeviceSeries.alignedAll", () => {
  it("equals a fresh alignment after live appends, late arrivals and new probes", () => {
    const d = new DeviceSeries();
    const fresh = () => {
      const copy = new DeviceSeries();
      for (const id of d.ids()) {
        const s = d.probe(id);
        s.times.forEach((t, i) => copy.probe(id).add(t, s.values[i]!));
      }
      return copy.aligned();
    };
    let t = 0;
    for (let step = 0; step < 300; step++) {
      const r = Math.random();
      if (r < 0.7) {
        t += 1 + Math.floor(Math.random() * 3);
        d.probe(Math.random() < 0.5 ? "pit" : "meat-1").add(t, t);
      } else if (r < 0.8) {
        d.probe("meat-1").add(Math.floor(Math.random() * (t + 1)), -1); // a late point
      } else if (r < 0.82) {
        d.probe(`meat-${2 + Math.floor(Math.random() * 2)}`).add(t + 1, 0); // a new probe
      }
      if (step % 7 === 0) expect(d.alignedAll()).toEqual(fresh());
    }
    expect(d.alignedAll()).toEqual(fresh());
  });
});
