// The cook plan as rows a person reads top to bottom: light the smoker, meat on, stall,
// wrap, pull, rest, serve — each time with its range.

import { formatClock, formatDuration } from "./format";

export interface Range {
  earliestMs: bigint;
  likelyMs: bigint;
  latestMs: bigint;
}

export interface PlanLike {
  lightAtMs: bigint;
  putOnAtMs: bigint;
  stall?: Range;
  wrapAt?: Range;
  pullAt?: Range;
  serveAtMs: bigint;
  restMin: number;
  cookHoursFast: number;
  cookHoursUsual: number;
  cookHoursSlow: number;
  basedOn: string;
}

export interface PlanRow {
  key: "light" | "on" | "stall" | "wrap" | "pull" | "rest" | "serve";
  label: string;
  time: string;
  range?: string;
}

const span = (r: Range) => `${formatClock(Number(r.earliestMs))}–${formatClock(Number(r.latestMs))}`;

/** The plan's steps in time order. */
export function planRows(p: PlanLike): PlanRow[] {
  const rows: PlanRow[] = [
    { key: "light", label: "Light the smoker", time: formatClock(Number(p.lightAtMs)) },
    { key: "on", label: "Meat on", time: formatClock(Number(p.putOnAtMs)) },
  ];
  if (p.stall) rows.push({ key: "stall", label: "Stall likely", time: `≈ ${formatClock(Number(p.stall.likelyMs))}`, range: span(p.stall) });
  if (p.wrapAt) rows.push({ key: "wrap", label: "Wrap", time: `≈ ${formatClock(Number(p.wrapAt.likelyMs))}`, range: span(p.wrapAt) });
  if (p.pullAt) {
    rows.push({ key: "pull", label: "Pull (at target)", time: `≈ ${formatClock(Number(p.pullAt.likelyMs))}`, range: `${span(p.pullAt)}, by ${formatClock(Number(p.pullAt.latestMs))} at the latest` });
    rows.push({ key: "rest", label: "Rest", time: `${formatDuration(p.restMin * 60_000)} or more`, range: "an early finish rests longer, wrapped and kept warm" });
  }
  rows.push({ key: "serve", label: "Serve", time: formatClock(Number(p.serveAtMs)) });
  return rows;
}

/** "9 h 10 min (7 h 5 min – 13 h 50 min), based on typical pork shoulders". */
export function planSummary(p: PlanLike): string {
  const d = (h: number) => formatDuration(h * 3_600_000);
  return `${d(p.cookHoursUsual)} on the smoker (${d(p.cookHoursFast)} – ${d(p.cookHoursSlow)}), based on ${p.basedOn}`;
}
