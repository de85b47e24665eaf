// Times, ages and CSV as the UI shows them.

/** How old a reading is, in words a glance can take in: "just now", "12 s ago", "3 min ago". */
export function formatAge(ageMs: number): string {
  if (!Number.isFinite(ageMs)) return "never";
  const s = Math.max(0, Math.floor(ageMs / 1000));
  if (s < 2) return "just now";
  if (s < 60) return `${s} s ago`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ago`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ago`;
  return `${Math.floor(h / 24)} d ago`;
}

/** The usual gap between readings, from recent event times (median; undefined with <2). */
export function expectedInterval(times: readonly number[]): number | undefined {
  const recent = times.slice(-21);
  const gaps: number[] = [];
  for (let i = 1; i < recent.length; i++) {
    const g = recent[i]! - recent[i - 1]!;
    if (g > 0) gaps.push(g);
  }
  if (gaps.length === 0) return undefined;
  gaps.sort((a, b) => a - b);
  return gaps[Math.floor(gaps.length / 2)];
}

/**
 * A reading is stale once its device has missed its expected interval a few times: three
 * intervals, and never less than 10 s (so a 1 Hz probe is not flagged by one late packet).
 */
export function isStale(ageMs: number, expectedMs: number | undefined): boolean {
  const interval = expectedMs ?? 60_000;
  return ageMs > Math.max(3 * interval, 10_000);
}

/** "14:05" (or "14:05:09" with seconds) in local time. */
export function formatClock(ms: number, seconds = false): string {
  const d = new Date(ms);
  const two = (n: number) => String(n).padStart(2, "0");
  const hm = `${two(d.getHours())}:${two(d.getMinutes())}`;
  return seconds ? `${hm}:${two(d.getSeconds())}` : hm;
}

/** "3 h 25 min", "12 min", "45 s". */
export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  return m % 60 ? `${h} h ${m % 60} min` : `${h} h`;
}

/** RFC 4180 CSV: fields with commas, quotes or newlines are quoted. */
export function toCsv(rows: readonly (readonly (string | number | null | undefined)[])[]): string {
  const field = (v: string | number | null | undefined) => {
    if (v === null || v === undefined) return "";
    const s = String(v);
    return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  return rows.map((r) => r.map(field).join(",")).join("\r\n") + "\r\n";
}

/** Every reading of a cook, one row per time, one column per probe (°C). */
export function cookCsv(probes: { probeId: string; points: { eventTimeMs: bigint; temperatureC?: number }[] }[]): string {
  const ids = probes.map((p) => p.probeId);
  const rows = new Map<number, (number | null)[]>();
  probes.forEach((p, i) => {
    for (const point of p.points) {
      const t = Number(point.eventTimeMs);
      const row = rows.get(t) ?? new Array<number | null>(ids.length).fill(null);
      row[i] = point.temperatureC ?? null;
      rows.set(t, row);
    }
  });
  const body = [...rows.entries()].sort((a, b) => a[0] - b[0]).map(([t, row]) => [new Date(t).toISOString(), ...row]);
  return toCsv([["time", ...ids.map((id) => `${id} (°C)`)], ...body]);
}

/** What a prediction says, for people: when, how sure, and what the probe is doing. */
export function describePrediction(p: {
  remainingS?: number;
  lowS?: number;
  highS?: number;
  doneAtMs?: bigint;
  stall: boolean;
  phase: string;
  /** What was learnt from this smoker's earlier cooks, when the estimate uses it. */
  basedOn?: string;
}): string {
  if (p.phase === "done" || p.remainingS === 0) return "at target";
  if (p.phase === "probe_out") return "probe out";
  if (p.remainingS === undefined || p.doneAtMs === undefined) return "estimating…";
  const done = Number(p.doneAtMs);
  const startedAt = done - p.remainingS * 1000;
  const range =
    p.lowS !== undefined
      ? ` (${formatClock(startedAt + p.lowS * 1000)}–${p.highS !== undefined ? formatClock(startedAt + p.highS * 1000) : "?"})`
      : "";
  return `done ≈ ${formatClock(done)}${range}, in ${formatDuration(p.remainingS * 1000)}${p.stall ? " · in the stall" : ""}${p.basedOn ? ` · ${p.basedOn}` : ""}`;
}
