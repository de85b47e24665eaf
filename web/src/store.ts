// What the views show, kept current from the gateway: devices (from the devices feed),
// latest probe values (from the trends feed), and the feeds' state. Views subscribe and
// re-render.

import { devices, subscribeDevices, subscribeTrends } from "./api";
import { expectedInterval } from "./format";
import type { Device, DeviceUpdate, TrendEvent } from "./gen/emberline/v1/emberline_pb";
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
  /** The trends feed's state (what the page's header shows). */
  status: FeedStatus = "connecting";
  statusDetail = "";
  /** The devices feed's state. */
  devicesStatus: FeedStatus = "connecting";
  error = "";
  private readonly listeners = new Set<Listener>();
  private feed: LiveFeed<TrendEvent> | undefined;
  private devicesFeed: LiveFeed<DeviceUpdate> | undefined;
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

  start(): void {
    // Readings first, then the devices: each device's latest values are read once it is
    // described, after the readings feed was opened, so nothing falls between the two.
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
    this.devicesFeed = new LiveFeed<DeviceUpdate>({
      open: (_resume, signal, opened) => subscribeDevices(this.deviceId, signal, opened),
      onEvent: (update) => this.applyDevices(update),
      onStatus: (status, detail) => {
        this.devicesStatus = status;
        // With no device to show, the overview says why.
        if (status === "reconnecting") this.error = detail ?? "";
        this.emit();
      },
    }).start();
  }

  async stop(): Promise<void> {
    await Promise.all([this.feed?.stop(), this.devicesFeed?.stop()]);
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

  /** Re-reads the latest values of the devices held: after a break the readings feed may
   * reopen from now (when it had no position yet), and what fell between is read here. */
  async refresh(): Promise<void> {
    await Promise.all([...this.devices.values()].map((entry) => this.readLatest(entry)));
  }

  /** Reads one device's latest probe values; values already newer stay. */
  private async readLatest(entry: DeviceNow): Promise<void> {
    if (this.cleared) return;
    try {
      const latest = await devices.getLatest({ deviceId: entry.device.deviceId });
      if (this.cleared) return; // signed out meanwhile
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
      this.error = "";
    } catch (e) {
      this.error = e instanceof Error ? e.message : String(e);
    }
    this.emit();
  }

  /** One message of the devices feed: a snapshot replaces the devices held; a change
   * describes some anew (a removed one comes once, flagged). */
  private applyDevices(update: DeviceUpdate): void {
    if (this.cleared) return;
    if (update.snapshot) {
      const named = new Set(update.devices.map((d) => d.deviceId));
      for (const id of [...this.devices.keys()]) if (!named.has(id)) this.devices.delete(id);
      this.error = "";
    }
    for (const device of update.devices) {
      const entry = this.devices.get(device.deviceId);
      if (device.removed) {
        this.devices.delete(device.deviceId);
      } else if (entry) {
        entry.device = device;
      } else {
        const added: DeviceNow = { device, probes: new Map() };
        this.devices.set(device.deviceId, added);
        void this.readLatest(added); // its tiles' values before its next reading arrives
      }
    }
    this.emit();
  }

  private apply(ev: TrendEvent): void {
    if (this.cleared) return;
    for (const l of this.updateListeners) l(ev);
    const entry = this.devices.get(ev.deviceId);
    // A device not described yet: the devices feed brings it (its first reading is a
    // change there), and its latest values are read then.
    if (!entry) return;
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
