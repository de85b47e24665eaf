// One device: its probes, a live chart over a chosen range, CSV export.

import { readings, subscribeAlerts, subscribePredictions } from "../api";
import { ProbeChart } from "../chart";
import { h } from "../dom";
import { formatClock, toCsv } from "../format";
import { LiveFeed, type Positioned } from "../live";
import { type PageMode, pageControls } from "../share";
import { DeviceSeries, historyStepMs } from "../series";
import type { LiveStore } from "../store";
import type { Unit } from "../units";
import { renderCooks } from "./cooks";
import { renderInsight } from "./insight";
import { deviceFacts, probeLabel, probeTiles } from "./probes";

const RANGES: [string, number][] = [
  ["30 min", 30 * 60_000],
  ["3 h", 3 * 3_600_000],
  ["12 h", 12 * 3_600_000],
  ["All", Number.POSITIVE_INFINITY],
];

/** `run` at most once per `ms`, however often the returned trigger is pulled meanwhile. */
function coalesce(run: () => void, ms: number): () => void {
  let pending = false;
  return () => {
    if (pending) return;
    pending = true;
    setTimeout(() => {
      pending = false;
      run();
    }, ms);
  };
}

/** How the page is shown: signed in (the default), or read only through a share link. */
export interface DeviceViewOptions {
  mode?: PageMode;
}

export class DeviceView {
  readonly series = new DeviceSeries();
  private readonly chart: ProbeChart;
  private readonly tiles = h("div", { class: "tiles" });
  private readonly head = h("header", { class: "device-head" });
  private readonly cooks = h("section", { class: "cook-history" });
  private readonly insight = h("section", { class: "insight", "aria-label": "Predictions and alerts" });
  /** Prediction and alert subscriptions of this device: each update redraws the insight. */
  private readonly insightFeeds: LiveFeed<Positioned>[];
  /** Redraws the insight once for a burst of updates. */
  private readonly scheduleInsight = coalesce(() => this.refreshInsight(), 250);
  /** Insight redraws caused by pushed updates, and the feeds' states (for the e2e test). */
  private pushedRedraws = 0;
  private readonly feedStatus: string[] = ["connecting", "connecting"];
  /** Whether the insight was drawn with the device's probe labels. */
  private insightLabeled = false;
  private rangeMs = RANGES[0]![1];
  /** Following the newest data (false after the user zoomed or panned). */
  private following = true;
  /** Redraws the chart once for a burst of readings. */
  private readonly schedule = coalesce(() => this.draw(), 250);
  private readonly unsubscribe: () => void;
  private readonly offStore: () => void;
  private loaded = false;
  private loading = false;

  constructor(
    private readonly root: HTMLElement,
    private readonly store: LiveStore,
    private readonly deviceId: string,
    private unit: Unit,
    private readonly options: DeviceViewOptions = {},
  ) {
    const can = pageControls(this.mode);
    const chartHost = h("div", { class: "chart", "data-testid": "chart" });
    this.chart = new ProbeChart(chartHost);
    const rangeButtons = RANGES.map(([label, ms]) =>
      h("button", { type: "button", "aria-pressed": ms === this.rangeMs ? "true" : "false", onclick: () => void this.setRange(ms) }, label),
    );
    const controls = h(
      "div",
      { class: "controls" },
      h("div", { class: "ranges", role: "group", "aria-label": "Range" }, rangeButtons),
      h(
        "div",
        { class: "pan" },
        h("button", { type: "button", "aria-label": "Earlier", onclick: () => this.pan(-0.5) }, "◀"),
        h("button", { type: "button", "aria-label": "Later", onclick: () => this.pan(0.5) }, "▶"),
        h("button", { type: "button", onclick: () => this.follow() }, "Live"),
        can.export ? h("button", { type: "button", onclick: () => this.exportCsv() }, "CSV") : null,
      ),
    );
    chartHost.addEventListener("mouseup", () => (this.following = false));
    chartHost.addEventListener("dblclick", () => this.follow());
    root.replaceChildren(
      ...(can.navigation ? [h("p", { class: "back" }, h("a", { href: "#/" }, "← All devices"))] : []),
      this.head,
      this.insight,
      this.tiles,
      controls,
      chartHost,
      this.cooks,
    );
    void renderCooks(this.cooks, deviceId, unit, this.mode);
    this.refreshInsight();
    // Pushed, not polled: a prediction or alert update (or a feed coming back, which may
    // have missed some while it was down) redraws the insight from the gateway's lists.
    const onStatus = (i: number) => (status: string) => {
      this.feedStatus[i] = status;
      if (status === "live") this.scheduleInsight();
    };
    const onEvent = () => {
      this.pushedRedraws++;
      this.scheduleInsight();
    };
    this.insightFeeds = [
      new LiveFeed<Positioned>({ open: (r, sig, opened) => subscribePredictions(deviceId, r, sig, opened), onEvent, onStatus: onStatus(0) }),
      new LiveFeed<Positioned>({ open: (r, sig, opened) => subscribeAlerts(deviceId, r, sig, opened), onEvent, onStatus: onStatus(1) }),
    ].map((f) => f.start());
    const onUpdate = (ev: { deviceId: string; probeId: string; eventTimeMs: bigint; temperatureC: number }) => {
      if (ev.deviceId !== this.deviceId) return;
      this.series.probe(ev.probeId).add(Number(ev.eventTimeMs), ev.temperatureC);
      this.schedule();
    };
    store.updateListeners.add(onUpdate);
    this.unsubscribe = () => store.updateListeners.delete(onUpdate);
    this.offStore = store.on(() => this.renderTiles());
    this.renderTiles();
    void this.setRange(this.rangeMs, rangeButtons);
  }

  private get mode(): PageMode {
    return this.options.mode ?? "signed-in";
  }

  /** Pushed updates so far and the prediction and alert feeds' states. */
  insightFeedState(): { pushed: number; feeds: string[] } {
    return { pushed: this.pushedRedraws, feeds: [...this.feedStatus] };
  }

  private refreshInsight(): void {
    const d = this.store.devices.get(this.deviceId);
    this.insightLabeled = d !== undefined;
    const label = (probe: string) => (d ? probeLabel(d, probe) : probe);
    void renderInsight(this.insight, this.deviceId, this.unit, label, this.mode);
  }

  setUnit(unit: Unit): void {
    this.unit = unit;
    void renderCooks(this.cooks, this.deviceId, unit, this.mode);
    this.refreshInsight();
    this.renderTiles();
    this.draw();
  }

  destroy(): void {
    for (const f of this.insightFeeds) void f.stop();
    this.unsubscribe();
    this.offStore();
    this.chart.destroy();
  }

  renderTiles(): void {
    const d = this.store.devices.get(this.deviceId);
    if (!d) {
      this.head.replaceChildren(h("h2", {}, this.deviceId), h("p", { class: "facts" }, this.store.error || "Loading…"));
      return;
    }
    this.head.replaceChildren(h("h2", {}, d.device.name || d.device.deviceId), deviceFacts(d));
    if (!this.insightLabeled) this.refreshInsight();
    this.tiles.replaceChildren(probeTiles(d, this.unit, Date.now()));
    if (this.loaded) this.schedule();
    else if (!this.loading) void this.setRange(this.rangeMs); // the device is known now
  }

  private async setRange(ms: number, buttons?: HTMLButtonElement[]): Promise<void> {
    this.rangeMs = ms;
    for (const b of buttons ?? [...this.root.querySelectorAll<HTMLButtonElement>(".ranges button")]) {
      b.setAttribute("aria-pressed", b.textContent === RANGES.find((r) => r[1] === ms)?.[0] ? "true" : "false");
    }
    this.following = true;
    await this.loadHistory();
    this.draw();
  }

  /** Fills the series from stored history for the range (live updates merge in by time). */
  private async loadHistory(): Promise<void> {
    const d = this.store.devices.get(this.deviceId);
    if (!d) return; // not known yet: loaded when the store first has it
    this.loading = true;
    const to = Date.now() + 60_000;
    const from = Number.isFinite(this.rangeMs) ? to - this.rangeMs - 60_000 : 0;
    const probes = [...new Set([...d.probes.keys(), ...d.device.probeIds])];
    await Promise.all(
      probes.map(async (probeId) => {
        try {
          const stepMs = historyStepMs(this.rangeMs);
          const r = await readings.getHistory({ deviceId: this.deviceId, probeId, fromMs: BigInt(from), toMs: BigInt(to), stepMs });
          const s = this.series.probe(probeId);
          for (const p of r.points) s.add(Number(p.eventTimeMs), p.temperatureC ?? null);
          // A long range comes in steps, charted at their middle, and only before the points
          // the chart already holds one by one (a shorter range's, or live ones).
          const firstPoint = s.times[0] ?? Number.POSITIVE_INFINITY;
          for (const step of r.steps) {
            const start = Number(step.startMs);
            if (start + stepMs <= firstPoint) s.add(start + stepMs / 2, step.meanC ?? null);
          }
        } catch {
          // The live feed shows the outage; the next range change retries.
        }
      }),
    );
    this.loading = false;
    this.loaded = true;
  }


  private draw(): void {
    const d = this.store.devices.get(this.deviceId);
    const ids = this.series.ids();
    const data = this.series.alignedAll();
    this.chart.update(
      data,
      {
        labels: ids.map((id) => (d ? probeLabel(d, id) : id)),
        targets: ids.map((id) => d?.device.targetsC[id]),
        unit: this.unit,
      },
      true,
    );
    if (this.following) {
      const xs = data[0];
      const last = xs.at(-1) ?? Date.now() / 1000;
      const first = xs[0] ?? last;
      const from = Number.isFinite(this.rangeMs) ? last - this.rangeMs / 1000 : first;
      this.chart.setWindow(Math.max(from, first), last);
    }
  }

  private pan(fraction: number): void {
    const w = this.chart.window();
    if (!w) return;
    const shift = (w.max - w.min) * fraction;
    this.following = false;
    this.chart.setWindow(w.min + shift, w.max + shift);
  }

  private follow(): void {
    this.following = true;
    this.draw();
  }

  private exportCsv(): void {
    const d = this.store.devices.get(this.deviceId);
    const ids = this.series.ids();
    const [xs, ...cols] = this.series.aligned();
    const rows: (string | number | null)[][] = [["time", ...ids.map((id) => `${d ? probeLabel(d, id) : id} (°C)`)]];
    xs.forEach((x, i) => rows.push([new Date(x * 1000).toISOString(), ...cols.map((c) => c[i] ?? null)]));
    const url = URL.createObjectURL(new Blob([toCsv(rows)], { type: "text/csv" }));
    const a = h("a", { href: url, download: `${this.deviceId}-${formatClock(Date.now()).replace(":", "")}.csv` });
    a.click();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  }

  /** Test hook: event times of the stored readings (with a temperature) of one probe. */
  async storedTimes(probeId: string, fromMs: number, toMs: number): Promise<number[]> {
    const r = await readings.getHistory({ deviceId: this.deviceId, probeId, fromMs: BigInt(fromMs), toMs: BigInt(toMs) });
    return r.points.filter((p) => p.temperatureC !== undefined).map((p) => Number(p.eventTimeMs));
  }

  /** Test hook: the event times per probe the chart holds. */
  snapshot(): Record<string, number[]> {
    return Object.fromEntries(this.series.ids().map((id) => [id, [...this.series.probe(id).times]]));
  }
}
