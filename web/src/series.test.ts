import { describe, expect, it } from "vitest";
import { DeviceSeries, Series } from "./series";

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
