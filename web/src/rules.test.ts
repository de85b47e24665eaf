import { describe, expect, it } from "vitest";
import type { AlertRule } from "./gen/emberline/v1/emberline_pb";
import { describeRule, RULE_KINDS, ruleKind, thresholdFromServer, thresholdToServer } from "./rules";

const rule = (r: Partial<AlertRule>): AlertRule => ({ ruleId: "r1", deviceId: "sim-1", kind: "above", forS: 0, ...r }) as AlertRule;

describe("thresholds", () => {
  it("converts a typed °F temperature and rate to the server's Celsius and back", () => {
    expect(thresholdToServer("temp", 212, "F")).toBeCloseTo(100);
    expect(thresholdToServer("rate", 9, "F")).toBeCloseTo(5);
    expect(thresholdFromServer("temp", 100, "F")).toBeCloseTo(212);
    expect(thresholdFromServer("rate", 5, "F")).toBeCloseTo(9);
  });

  it("leaves Celsius and other measures alone", () => {
    expect(thresholdToServer("temp", 93, "C")).toBe(93);
    for (const m of ["seconds", "percent", "minutes"] as const) {
      expect(thresholdToServer(m, 30, "F")).toBe(30);
      expect(thresholdFromServer(m, 30, "F")).toBe(30);
    }
  });
});

describe("describeRule", () => {
  const names = (p: string) => ({ pit: "Pit" })[p] ?? p;

  it("says a rule in the user's unit", () => {
    expect(describeRule(rule({ probeId: "pit", threshold: 135, forS: 60 }), "F", names)).toBe("Pit goes above 275°F for 1 min");
    expect(describeRule(rule({ probeId: "pit", kind: "below", threshold: 100 }), "C", names)).toBe("Pit falls below 100°C");
    expect(describeRule(rule({ kind: "battery_below", threshold: 20 }), "C", names)).toBe("Device battery below 20 %");
  });

  it("names the probe's target when a target rule has no threshold, and the repeat", () => {
    expect(describeRule(rule({ probeId: "meat-1", kind: "target_reached", repeatEveryS: 300 }), "C", names)).toBe(
      "meat-1 reaches its target, repeated every 5 min until acknowledged",
    );
  });

  it("says where the alerts go and how they escalate", () => {
    expect(describeRule(rule({ probeId: "pit", threshold: 150, notify: ["phone"] }), "C", names)).toBe("Pit goes above 150°C → phone");
    expect(describeRule(rule({ probeId: "pit", threshold: 150, repeatEveryS: 300, notify: ["phone", "pager"] }), "C", names)).toBe(
      "Pit goes above 150°C → phone, then pager if not acknowledged within 5 min",
    );
  });

  it("puts the user's label first", () => {
    expect(describeRule(rule({ probeId: "pit", threshold: 150, label: "Too hot" }), "C", names)).toBe("Too hot: Pit goes above 150°C");
  });
});

describe("RULE_KINDS", () => {
  it("offers each kind once, and knows the device-wide ones", () => {
    expect(new Set(RULE_KINDS.map((k) => k.kind)).size).toBe(RULE_KINDS.length);
    expect(ruleKind("battery_below")?.probe).toBe(false);
    expect(ruleKind("above")?.probe).toBe(true);
    expect(ruleKind("warmer")).toBeUndefined();
  });
});
