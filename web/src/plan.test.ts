import { describe, expect, it } from "vitest";
import { planRows, planSummary, type PlanLike } from "./plan";

const at = (h: number, m = 0) => BigInt(new Date(2026, 10, 30, h, m).getTime());

const shoulder: PlanLike = {
  lightAtMs: at(4, 15),
  putOnAtMs: at(5, 0),
  stall: { earliestMs: at(8, 0), likelyMs: at(9, 0), latestMs: at(10, 30) },
  wrapAt: { earliestMs: at(9, 0), likelyMs: at(10, 0), latestMs: at(11, 30) },
  pullAt: { earliestMs: at(12, 0), likelyMs: at(14, 30), latestMs: at(17, 0) },
  serveAtMs: at(18, 0),
  restMin: 60,
  cookHoursFast: 7,
  cookHoursUsual: 9.5,
  cookHoursSlow: 12,
  basedOn: "typical pork shoulders",
};

describe("planRows", () => {
  it("lists the steps in time order with their ranges", () => {
    const rows = planRows(shoulder);
    expect(rows.map((r) => r.key)).toEqual(["light", "on", "stall", "wrap", "pull", "rest", "serve"]);
    expect(rows[0]!.time).toBe("04:15");
    expect(rows[2]!.range).toBe("08:00–10:30");
    expect(rows[4]!.time).toBe("≈ 14:30");
    expect(rows[4]!.range).toContain("by 17:00 at the latest");
    expect(rows[5]!.time).toBe("1 h or more");
    expect(rows[6]!.time).toBe("18:00");
  });

  it("leaves out the stall and the wrap when there are none", () => {
    const roast = { ...shoulder, stall: undefined, wrapAt: undefined };
    expect(planRows(roast).map((r) => r.key)).toEqual(["light", "on", "pull", "rest", "serve"]);
  });

  it("sums the cook up with its spread and what it rests on", () => {
    expect(planSummary(shoulder)).toBe("9 h 30 min on the smoker (7 h – 12 h), based on typical pork shoulders");
  });
});
