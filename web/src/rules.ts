// Alert rules as the Settings page shows and edits them: which kinds there are, what each
// asks for, its threshold in the user's unit (the server speaks Celsius), and one line of
// words per rule.

import type { AlertRule } from "./gen/emberline/v1/emberline_pb";
import { fromCelsius, rateFromCelsius, type Unit } from "./units";

/** What a kind's threshold is measured in. */
export type Measure = "temp" | "rate" | "seconds" | "percent" | "minutes" | "none";

export interface RuleKind {
  kind: string;
  label: string;
  /** Whether it watches one probe (else the whole device). */
  probe: boolean;
  measure: Measure;
  /** Whether the threshold may be left empty (the probe's target, for target_reached). */
  optional: boolean;
}

/** The kinds a user picks from, in the order the form offers them. */
export const RULE_KINDS: readonly RuleKind[] = [
  { kind: "above", label: "goes above", probe: true, measure: "temp", optional: false },
  { kind: "below", label: "falls below", probe: true, measure: "temp", optional: false },
  { kind: "target_reached", label: "reaches its target", probe: true, measure: "temp", optional: true },
  { kind: "rate_above", label: "rises faster than (per min)", probe: true, measure: "rate", optional: false },
  { kind: "rate_below", label: "rises slower than (per min)", probe: true, measure: "rate", optional: false },
  { kind: "probe_disconnected", label: "is unplugged for (s)", probe: true, measure: "seconds", optional: false },
  { kind: "predicted_done_within", label: "is predicted done within (min)", probe: true, measure: "minutes", optional: false },
  { kind: "device_offline", label: "device silent for (s)", probe: false, measure: "seconds", optional: false },
  { kind: "battery_below", label: "battery below (%)", probe: false, measure: "percent", optional: false },
  { kind: "fire_out", label: "the fire goes out", probe: false, measure: "none", optional: true },
];

export function ruleKind(kind: string): RuleKind | undefined {
  return RULE_KINDS.find((k) => k.kind === kind);
}

/** A threshold typed in the user's unit, as the server takes it (Celsius for temperatures
 * and rates). */
export function thresholdToServer(measure: Measure, value: number, unit: Unit): number {
  if (unit === "C") return value;
  if (measure === "temp") return ((value - 32) * 5) / 9;
  if (measure === "rate") return (value * 5) / 9;
  return value;
}

/** A threshold from the server in the user's unit. */
export function thresholdFromServer(measure: Measure, value: number, unit: Unit): number {
  if (measure === "temp") return fromCelsius(value, unit);
  if (measure === "rate") return rateFromCelsius(value, unit);
  return value;
}

function amount(measure: Measure, value: number, unit: Unit): string {
  const v = thresholdFromServer(measure, value, unit);
  const round = (n: number) => (Number.isInteger(n) ? String(n) : n.toFixed(1));
  switch (measure) {
    case "temp":
      return `${round(v)}°${unit}`;
    case "rate":
      return `${round(v)}°${unit}/min`;
    case "seconds":
      return `${round(v)} s`;
    case "minutes":
      return `${round(v)} min`;
    case "percent":
      return `${round(v)} %`;
    case "none":
      return "";
  }
}

/** One line for a rule: "Pit goes above 275°F for 1 min". */
export function describeRule(rule: AlertRule, unit: Unit, probeName: (probe: string) => string): string {
  const kind = ruleKind(rule.kind);
  const subject = rule.probeId ? probeName(rule.probeId) : "Device";
  const label = kind?.label.replace(/ \((per min|s|min|%)\)$/, "") ?? rule.kind.replaceAll("_", " ");
  let what = `${subject} ${label}`;
  if (rule.kind === "target_reached" && rule.threshold === undefined) {
    // The probe's own target: nothing to add.
  } else if (rule.kind === "outside_band") what += ` outside ${rule.low ?? "—"}…${rule.high ?? "—"} °C`;
  else if (kind && rule.threshold !== undefined) what += ` ${amount(kind.measure, rule.threshold, unit)}`;
  if (rule.forS > 0) what += ` for ${rule.forS >= 60 ? `${Math.round(rule.forS / 60)} min` : `${rule.forS} s`}`;
  const every = rule.repeatEveryS === undefined ? "" : `${+(rule.repeatEveryS / 60).toFixed(1)} min`;
  const [first, ...then] = rule.notify ?? [];
  if (first && then.length) what += ` → ${first}, then ${then.join(", then ")} if not acknowledged within ${every}`;
  else if (first) what += ` → ${first}`;
  if (every && !then.length) what += `, repeated every ${every} until acknowledged`;
  return rule.label ? `${rule.label}: ${what}` : what;
}
