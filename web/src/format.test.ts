import { describe, expect, it } from "vitest";
import { expectedInterval, formatAge, formatDuration, isStale, toCsv } from "./format";

describe("format", () => {
  it("says how old a reading is", () => {
    expect(formatAge(500)).toBe("just now");
    expect(formatAge(12_400)).toBe("12 s ago");
    expect(formatAge(3 * 60_000 + 5_000)).toBe("3 min ago");
    expect(formatAge(5 * 3_600_000)).toBe("5 h ago");
    expect(formatAge(3 * 86_400_000)).toBe("3 d ago");
    expect(formatAge(-5_000)).toBe("just now");
    expect(formatAge(Number.POSITIVE_INFINITY)).toBe("never");
  });

  it("learns the usual interval and flags a device that missed it", () => {
    const oneHz = Array.from({ length: 30 }, (_, i) => i * 1_000);
    expect(expectedInterval(oneHz)).toBe(1_000);
    expect(expectedInterval([5])).toBeUndefined();
    // One late packet is not stale; a 1 Hz probe silent for 11 s is.
    expect(isStale(4_000, 1_000)).toBe(false);
    expect(isStale(11_000, 1_000)).toBe(true);
    // A device that uploads every 10 minutes is fine at 20 minutes, stale at 31.
    expect(isStale(20 * 60_000, 600_000)).toBe(false);
    expect(isStale(31 * 60_000, 600_000)).toBe(true);
  });

  it("says how long a cook took", () => {
    expect(formatDuration(45_000)).toBe("45 s");
    expect(formatDuration(12 * 60_000)).toBe("12 min");
    expect(formatDuration((3 * 60 + 25) * 60_000)).toBe("3 h 25 min");
    expect(formatDuration(2 * 3_600_000)).toBe("2 h");
  });

  it("writes RFC 4180 CSV", () => {
    expect(toCsv([["time", "pit"], ["a,b", 1.5], ['say "hi"', null]])).toBe(
      'time,pit\r\n"a,b",1.5\r\n"say ""hi""",\r\n',
    );
  });
});
