// Per-probe time series for the chart: sorted by event time, one point per time.

/**
 * The step to read a range's stored history in (GetHistory's `stepMs`): every point up to
 * an hour, steps of a minute up to a day and for the whole cook, ten minutes beyond a day —
 * so a 12 h chart holds 720 points a probe, not 43 200 at one reading a second.
 */
export function historyStepMs(rangeMs: number): number {
  if (rangeMs <= 3_600_000) return 0;
  if (rangeMs <= 24 * 3_600_000 || !Number.isFinite(rangeMs)) return 60_000;
  return 600_000;
}

export class Series {
  readonly times: number[] = [];
  readonly values: (number | null)[] = [];
  /** Bumped by every insertion that is not at the end (cached alignments are then stale). */
  reshaped = 0;

  /** Adds a point; false when the time is already there (a duplicate). */
  add(timeMs: number, value: number | null): boolean {
    const t = this.times;
    if (t.length === 0 || timeMs > t[t.length - 1]!) {
      t.push(timeMs);
      this.values.push(value);
      return true;
    }
    let lo = 0;
    let hi = t.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (t[mid]! < timeMs) lo = mid + 1;
      else hi = mid;
    }
    if (t[lo] === timeMs) return false;
    this.reshaped++;
    t.splice(lo, 0, timeMs);
    this.values.splice(lo, 0, value);
    return true;
  }

  get length(): number {
    return this.times.length;
  }
}

/** The probes of one device, aligned on the union of their times (uPlot's data shape). */
interface Alignment {
  ids: string[];
  reshaped: number[];
  lengths: number[];
  data: [number[], ...(number | null)[][]];
}

export class DeviceSeries {
  readonly probes = new Map<string, Series>();
  private cache: Alignment | undefined;

  /**
   * Everything, aligned, reusing the previous alignment when the series only grew at the
   * end since (the live case): then only the new points are merged, so a 12-hour chart
   * costs no more per update than a 5-minute one.
   */
  alignedAll(): [number[], ...(number | null)[][]] {
    const ids = this.ids();
    const series = ids.map((id) => this.probes.get(id)!);
    const c = this.cache;
    const lastX = c ? (c.data[0].at(-1) ?? -Infinity) * 1000 : -Infinity;
    const reusable =
      c !== undefined &&
      c.ids.length === ids.length &&
      c.ids.every((id, i) => id === ids[i]) &&
      series.every((s, i) => s.reshaped === c.reshaped[i] && s.length >= c.lengths[i]! && (s.length === c.lengths[i] || s.times[c.lengths[i]!]! > lastX));
    if (!reusable) {
      const data = this.aligned();
      this.cache = { ids, reshaped: series.map((s) => s.reshaped), lengths: series.map((s) => s.length), data };
      return data;
    }
    const tail = new DeviceSeries();
    series.forEach((s, i) => {
      const t = tail.probe(ids[i]!);
      for (let k = c.lengths[i]!; k < s.length; k++) t.add(s.times[k]!, s.values[k]!);
    });
    // Same order as `ids` (the tail has every id, possibly empty).
    const [xs, ...cols] = tail.alignedIn(ids);
    for (const x of xs) c.data[0].push(x);
    cols.forEach((col, i) => {
      const target = c.data[i + 1] as (number | null)[];
      for (const v of col) target.push(v);
    });
    c.lengths = series.map((s) => s.length);
    return c.data;
  }

  /** Aligned columns for `ids` in that order. */
  private alignedIn(ids: string[]): [number[], ...(number | null)[][]] {
    return alignSeries(ids.map((id) => this.probe(id)), -Infinity);
  }

  probe(id: string): Series {
    let s = this.probes.get(id);
    if (!s) {
      s = new Series();
      this.probes.set(id, s);
    }
    return s;
  }

  /** Probe ids in display order: the pit first, then by id. */
  ids(): string[] {
    return [...this.probes.keys()].sort((a, b) =>
      a === "pit" ? -1 : b === "pit" ? 1 : a.localeCompare(b, undefined, { numeric: true }),
    );
  }

  /** [x in seconds, ...one column per probe in `ids()` order], nulls where a probe has no point.
   * A k-way merge of the sorted series (no sorting, no hashing): linear in the points. */
  aligned(fromMs = -Infinity): [number[], ...(number | null)[][]] {
    return alignSeries(
      this.ids().map((id) => this.probes.get(id)!),
      fromMs,
    );
  }
}

function alignSeries(series: Series[], fromMs: number): [number[], ...(number | null)[][]] {
  const cursors = series.map((s) => lowerBound(s.times, fromMs));
  // Common case: every probe reports at the same instants.
  const first = series[0];
  if (first && series.every((s, i) => sameTail(s.times, cursors[i]!, first.times, cursors[0]!))) {
    const from = cursors[0]!;
    const xs = first.times.slice(from).map((t) => t / 1000);
    return [xs, ...series.map((s, i) => s.values.slice(cursors[i]!))];
  }
  const xs: number[] = [];
  const columns: (number | null)[][] = series.map(() => []);
  for (;;) {
    let next = Infinity;
    for (let i = 0; i < series.length; i++) {
      const t = series[i]!.times[cursors[i]!];
      if (t !== undefined && t < next) next = t;
    }
    if (next === Infinity) break;
    xs.push(next / 1000);
    for (let i = 0; i < series.length; i++) {
      const s = series[i]!;
      const c = cursors[i]!;
      if (s.times[c] === next) {
        columns[i]!.push(s.values[c]!);
        cursors[i] = c + 1;
      } else {
        columns[i]!.push(null);
      }
    }
  }
  return [xs, ...columns];
}

/** First index with `times[i] >= t`. */
function lowerBound(times: readonly number[], t: number): number {
  let lo = 0;
  let hi = times.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (times[mid]! < t) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Whether `a` from `ia` and `b` from `ib` hold the same times. */
function sameTail(a: readonly number[], ia: number, b: readonly number[], ib: number): boolean {
  if (a.length - ia !== b.length - ib) return false;
  for (let k = 0; k < a.length - ia; k++) if (a[ia + k] !== b[ib + k]) return false;
  return true;
}
