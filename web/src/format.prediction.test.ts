import { describe, expect, it } from "vitest";
import { describePrediction, formatClock } from "./format";

describe("describePrediction", () => {
  const at = new Date(2026, 10, 27, 12, 0, 0).getTime();
  it("gives the done time, its 80 % range and the time left", () => {
    const text = describePrediction({
      remainingS: 5_400,
      lowS: 3_600,
      highS: 9_000,
      doneAtMs: BigInt(at + 5_400_000),
      stall: true,
      phase: "stall",
    });
    expect(text).toBe(
      `done ≈ ${formatClock(at + 5_400_000)} (${formatClock(at + 3_600_000)}–${formatClock(at + 9_000_000)}), in 1 h 30 min · in the stall`,
    );
  });
  it("says what it learnt from this smoker's earlier cooks", () => {
    const text = describePrediction({
      remainingS: 60,
      doneAtMs: BigInt(at),
      stall: false,
      phase: "heating",
      basedOn: "based on your last 3 pork shoulders",
    });
    expect(text).toBe(`done ≈ ${formatClock(at)}, in 1 min · based on your last 3 pork shoulders`);
  });
  it("says when there is nothing to say yet, or nothing left", () => {
    expect(describePrediction({ stall: false, phase: "heating" })).toBe("estimating…");
    expect(describePrediction({ remainingS: 0, doneAtMs: 1n, stall: false, phase: "done" })).toBe("at target");
    expect(describePrediction({ remainingS: 60, doneAtMs: 1n, stall: false, phase: "probe_out" })).toBe("probe out");
    expect(describePrediction({ remainingS: 60, doneAtMs: BigInt(at), stall: false, phase: "heating" })).toBe(
      `done ≈ ${formatClock(at)}, in 1 min`,
    );
  });
});
