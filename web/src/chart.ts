// The live multi-probe chart (uPlot): drag to zoom, double-click to reset, target lines.

import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { fromCelsius, type Unit } from "./units";

const COLORS = ["#e4572e", "#2e86ab", "#76b041", "#a23b72", "#f3a712", "#17bebb", "#8d6a9f", "#c5283d"];

export interface ChartSpec {
  labels: string[];
  /** Target per series (Celsius), if any. */
  targets: (number | undefined)[];
  unit: Unit;
}

/** Draws each series' target as a dashed horizontal line in its colour. */
function targetLines(spec: () => ChartSpec): uPlot.Plugin {
  return {
    hooks: {
      draw: (u) => {
        const { targets, unit } = spec();
        const ctx = u.ctx;
        ctx.save();
        ctx.setLineDash([6, 4]);
        ctx.lineWidth = 1.5 * devicePixelRatio;
        targets.forEach((t, i) => {
          if (t === undefined) return;
          const y = u.valToPos(fromCelsius(t, unit), "y", true);
          if (!Number.isFinite(y)) return;
          ctx.strokeStyle = COLORS[i % COLORS.length]!;
          ctx.beginPath();
          ctx.moveTo(u.bbox.left, y);
          ctx.lineTo(u.bbox.left + u.bbox.width, y);
          ctx.stroke();
        });
        ctx.restore();
      },
    },
  };
}

export class ProbeChart {
  private plot: uPlot | undefined;
  private spec: ChartSpec = { labels: [], targets: [], unit: "C" };
  private resizeObserver: ResizeObserver;

  constructor(private readonly host: HTMLElement) {
    this.resizeObserver = new ResizeObserver(() => this.plot?.setSize(this.size()));
    this.resizeObserver.observe(host);
  }

  private size(): { width: number; height: number } {
    const width = Math.max(280, this.host.clientWidth);
    return { width, height: Math.round(Math.min(420, Math.max(220, width * 0.55))) };
  }

  /** Replaces the data (x in seconds, one column per label). Keeps a zoom the user made. */
  update(data: uPlot.AlignedData, spec: ChartSpec, keepZoom: boolean): void {
    const shape = JSON.stringify([spec.labels, spec.unit]);
    const same = this.plot !== undefined && shape === JSON.stringify([this.spec.labels, this.spec.unit]);
    this.spec = spec;
    const converted = [data[0], ...data.slice(1).map((col) => (col as (number | null)[]).map((v) => (v === null ? null : fromCelsius(v, spec.unit))))] as uPlot.AlignedData;
    if (same && this.plot) {
      this.plot.setData(converted, !keepZoom);
      return;
    }
    this.plot?.destroy();
    const dark = document.documentElement.dataset.theme === "dark";
    const axis = { stroke: dark ? "#d6d3d1" : "#44403c", grid: { stroke: dark ? "#3a3330" : "#e7e5e4" }, ticks: { stroke: dark ? "#3a3330" : "#e7e5e4" } };
    const opts: uPlot.Options = {
      ...this.size(),
      cursor: { drag: { x: true, y: false } },
      legend: { live: true },
      scales: { x: { time: true } },
      axes: [axis, { ...axis, values: (_u, ticks) => ticks.map((t) => `${t}°`) }],
      series: [
        {},
        ...spec.labels.map((label, i) => ({
          label,
          stroke: COLORS[i % COLORS.length],
          width: 2,
          spanGaps: false,
          value: (_u: uPlot, v: number | null) => (v === null ? "—" : `${v.toFixed(1)}°${spec.unit}`),
        })),
      ],
      plugins: [targetLines(() => this.spec)],
    };
    this.plot = new uPlot(opts, converted, this.host);
  }

  /** Shows [from, to] (seconds). */
  setWindow(from: number, to: number): void {
    this.plot?.setScale("x", { min: from, max: to });
  }

  window(): { min: number; max: number } | undefined {
    const x = this.plot?.scales.x;
    return x && x.min !== undefined && x.max !== undefined ? { min: x.min, max: x.max } : undefined;
  }

  destroy(): void {
    this.resizeObserver.disconnect();
    this.plot?.destroy();
  }
}
