// What the views show, kept current from the gateway: devices, latest probe values, and
// the live feed's state. Views subscribe and re-render.

import { devices, subscribeTrends } from "./api";
import { expectedInterval } from "./format";
import type { Device, TrendEvent } from "./gen/emberline/v1/emberline_pb";
import { type FeedStatus, LiveFeed } from "./live";

export interface ProbeNow {
  probeId: string;
  temperatureC: number | undefined;
  rateCPerMin: number | undefined;
  eventTimeMs: number;
  /** When Emberline received it (for "12 s ago"). */
  receivedMs: number;
  /** Recent event times, to learn the usual interval. */
  recent: number[];
}

export interface DeviceNow {
  device: Device;
  probes: Map<string, ProbeNow>;
}

type Listener = () => void;

/** Devices and their probes' latest values, for the overview and the device header. */
export class LiveStore {
  readonly devices = new Map<string, DeviceNow>();
  status: FeedStatus = "connecting";
  statusDetail = "";
  error = "";
  private readonly listeners = new Set<Listener>();
  private feed: LiveFeed<TrendEvent> | undefined;
  private refreshTimer: ReturnType<typeof setInterval> | undefined;
  /** Extra consumers of raw updates (the chart). */
  readonly updateListeners = new Set<(ev: TrendEvent) => void>();

  constructor(private readonly deviceId = "") {}

  on(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(): void {
    for (const l of this.listeners) l();
  }

  async start(): Promise<void> {
    // Subscribe first, then read the current state: nothing falls between the two.
    this.feed = new LiveFeed<TrendEvent>({
      open: (resume, signal, opened) => subscribeTrends(this.deviceId, resume, signal, opened),
      onEvent: (ev) => this.apply(ev),
      onStatus: (status, detail) => {
        const reconnected = status === "live" && this.status === "reconnecting";
        this.status = status;
        this.statusDetail = detail ?? "";
        if (reconnected) void this.refresh();
        this.emit();
      },
    }).start();
    await this.refresh();
    this.refreshTimer = setInterval(() => void this.refresh(), 10_000);
  }

  async stop(): Promise<void> {
    clearInterval(this.refreshTimer);
    await this.feed?.stop();
  }

  /** Forgets everything it holds and everyone listening (on signing out: nothing of the
   * session may show afterwards). */
  clear(): void {
    this.cleared = true;
    this.devices.clear();
    this.listeners.clear();
    this.updateListeners.clear();
    this.error = "";
  }

  private cleared = false;

  /** Re-reads devices (names, battery, targets) and latest values. */
  async refresh(): Promise<void> {
    if (this.cleared) return;
    try {
      const listed = (await devices.listDevices({})).devices.filter(
        (d) => !this.deviceId || d.deviceId === this.deviceId,
      );
      if (this.cleared) return; // signed out meanwhile
      for (const device of listed) {
        const entry = this.devices.get(device.deviceId) ?? { device, probes: new Map() };
        entry.device = device;
        this.devices.set(device.deviceId, entry);
        const latest = await devices.getLatest({ deviceId: device.deviceId });
        if (this.cleared) return;
        for (const p of latest.probes) {
          const t = Number(p.eventTimeMs);
          const probe = entry.probes.get(p.probeId);
          if (probe && probe.eventTimeMs >= t) continue;
          entry.probes.set(p.probeId, {
            probeId: p.probeId,
            temperatureC: p.temperatureC,
            rateCPerMin: p.trend?.rateCPerMin,
            eventTimeMs: t,
            receivedMs: Number(p.receivedTimeMs),
            recent: [...(probe?.recent ?? []), t].slice(-21),
          });
        }
      }
      for (const id of [...this.devices.keys()]) {
        if (!listed.some((d) => d.deviceId === id)) this.devices.delete(id);
      }
      this.error = "";
    } catch (e) {
      this.error = e instanceof Error ? e.message : String(e);
    }
    this.emit();
  }

  private apply(ev: TrendEvent): void {
    if (this.cleared) return;
    for (const l of this.updateListeners) l(ev);
    const entry = this.devices.get(ev.deviceId);
    if (!entry) {
      void this.refresh(); // a device seen for the first time
      return;
    }
    const t = Number(ev.eventTimeMs);
    const probe = entry.probes.get(ev.probeId);
    if (probe && probe.eventTimeMs > t) return;
    entry.probes.set(ev.probeId, {
      probeId: ev.probeId,
      temperatureC: ev.temperatureC,
      rateCPerMin: ev.trend?.rateCPerMin,
      eventTimeMs: t,
      // The stream carries the event time; for a live update it is the receive time too.
      receivedMs: Math.max(t, probe?.receivedMs ?? 0),
      recent: [...(probe?.recent ?? []), t].slice(-21),
    });
    this.emit();
  }
}

/** The usual interval of a device: the smallest of its probes' usual intervals. */
export function deviceInterval(d: DeviceNow): number | undefined {
  let best: number | undefined;
  for (const p of d.probes.values()) {
    const i = expectedInterval(p.recent);
    if (i !== undefined && (best === undefined || i < best)) best = i;
  }
  return best;
}
