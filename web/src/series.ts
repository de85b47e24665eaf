// Per-probe time series for the chart: sorted by event time, one point per time.

export class Series {
  readonly times: number[] = [];
  readonly values: (number | null)[] = [];

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
    t.splice(lo, 0, timeMs);
    this.values.splice(lo, 0, value);
    return true;
  }

  get length(): number {
    return this.times.length;
  }
}

/** The probes of one device, aligned on the union of their times (uPlot's data shape). */
export class DeviceSeries {
  readonly probes = new Map<string, Series>();

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

  /** [x in seconds, ...one column per probe in `ids()` order], nulls where a probe has no point. */
  aligned(fromMs = -Infinity): [number[], ...(number | null)[][]] {
    const ids = this.ids();
    const all = new Set<number>();
    for (const id of ids) for (const t of this.probes.get(id)!.times) if (t >= fromMs) all.add(t);
    const xs = [...all].sort((a, b) => a - b);
    const index = new Map(xs.map((t, i) => [t, i]));
    const columns = ids.map((id) => {
      const col: (number | null)[] = new Array(xs.length).fill(null);
      const s = this.probes.get(id)!;
      for (let i = 0; i < s.times.length; i++) {
        const at = index.get(s.times[i]!);
        if (at !== undefined) col[at] = s.values[i]!;
      }
      return col;
    });
    return [xs.map((t) => t / 1000), ...columns];
  }
}
