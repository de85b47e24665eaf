import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import {
  type Device,
  DeviceSchema,
  type DeviceUpdate,
  DeviceUpdateSchema,
  type TrendEvent,
  TrendEventSchema,
} from "./gen/emberline/v1/emberline_pb";
import { LiveStore } from "./store";

// The gateway, faked: each subscription is a stream the test feeds message by message.
const gateway = vi.hoisted(() => {
  class Stream<T> implements AsyncIterable<T> {
    private readonly queue: (T | Error)[] = [];
    private wake: (() => void) | undefined;

    constructor(
      readonly signal: AbortSignal,
      private readonly opened: () => void,
    ) {
      signal.addEventListener("abort", () => this.wake?.());
    }

    /** Sends a message, or breaks the stream with an error. */
    push(item: T | Error): void {
      this.queue.push(item);
      this.wake?.();
    }

    async *[Symbol.asyncIterator](): AsyncGenerator<T> {
      this.opened(); // the response headers
      for (;;) {
        const item = this.queue.shift();
        if (item instanceof Error) throw item;
        if (item !== undefined) {
          yield item;
          continue;
        }
        if (this.signal.aborted) throw new Error("aborted");
        await new Promise<void>((resolve) => (this.wake = resolve));
      }
    }
  }
  return {
    Stream,
    deviceStreams: [] as Stream<DeviceUpdate>[],
    trendStreams: [] as Stream<TrendEvent>[],
    /** The devices whose latest values were read, in order. */
    latestRead: [] as string[],
  };
});

vi.mock("./api", () => ({
  devices: {
    getLatest: async ({ deviceId }: { deviceId: string }) => {
      gateway.latestRead.push(deviceId);
      return { probes: [{ probeId: "pit", eventTimeMs: 1_000n, receivedTimeMs: 1_000n, temperatureC: 110 }] };
    },
  },
  subscribeTrends: (_deviceId: string, _resume: unknown, signal: AbortSignal, opened: () => void) => {
    const s = new gateway.Stream<TrendEvent>(signal, opened);
    gateway.trendStreams.push(s);
    return s;
  },
  subscribeDevices: (_deviceId: string, signal: AbortSignal, opened: () => void) => {
    const s = new gateway.Stream<DeviceUpdate>(signal, opened);
    gateway.deviceStreams.push(s);
    return s;
  },
}));

const device = (deviceId: string, more: MessageInitShape<typeof DeviceSchema> = {}) =>
  create(DeviceSchema, { deviceId, name: `Grill ${deviceId}`, ...more });
const snapshot = (...devices: Device[]) => create(DeviceUpdateSchema, { snapshot: true, devices });
const change = (...devices: Device[]) => create(DeviceUpdateSchema, { snapshot: false, devices });

/** Resolves once `ok` holds, checked now and after each emit of `store`. */
function until(store: LiveStore, ok: () => boolean): Promise<void> {
  return new Promise((resolve) => {
    if (ok()) return resolve();
    const off = store.on(() => {
      if (!ok()) return;
      off();
      resolve();
    });
  });
}

const names = (store: LiveStore) => Object.fromEntries([...store.devices].map(([id, d]) => [id, d.device.name]));

describe("LiveStore's devices feed", () => {
  let store: LiveStore;

  beforeEach(() => {
    vi.useFakeTimers();
    gateway.deviceStreams.length = 0;
    gateway.trendStreams.length = 0;
    gateway.latestRead.length = 0;
    store = new LiveStore();
    store.start();
  });

  afterEach(async () => {
    await store.stop();
    vi.useRealTimers();
  });

  it("takes the snapshot, then each change: names, targets, new and removed devices", async () => {
    await until(store, () => store.devicesStatus === "live");
    gateway.deviceStreams[0]!.push(snapshot(device("a"), device("b")));
    await until(store, () => store.devices.get("b")?.probes.get("pit")?.temperatureC === 110);
    expect(names(store)).toEqual({ a: "Grill a", b: "Grill b" });
    expect(gateway.latestRead).toEqual(["a", "b"]);

    // A change describes the device anew; its values stay, and are not read again.
    gateway.deviceStreams[0]!.push(change(device("a", { name: "Brisket smoker", targetsC: { "meat-1": 93 } })));
    await until(store, () => store.devices.get("a")?.device.name === "Brisket smoker");
    expect(store.devices.get("a")?.device.targetsC).toEqual({ "meat-1": 93 });
    expect(store.devices.get("a")?.probes.get("pit")?.temperatureC).toBe(110);
    expect(gateway.latestRead).toEqual(["a", "b"]);

    // A reading of a device not described yet is left to the devices feed: nothing re-read.
    const reading = { partition: 0, offset: 1n, deviceId: "c", probeId: "pit", eventTimeMs: 2_000n, temperatureC: 90 };
    gateway.trendStreams[0]!.push(create(TrendEventSchema, reading));
    await vi.advanceTimersByTimeAsync(0);
    expect(store.devices.has("c")).toBe(false);
    expect(gateway.latestRead).toEqual(["a", "b"]);

    // A device new to the store: added, and its latest values read once.
    gateway.deviceStreams[0]!.push(change(device("c")));
    await until(store, () => store.devices.get("c")?.probes.size === 1);
    expect(gateway.latestRead).toEqual(["a", "b", "c"]);

    gateway.deviceStreams[0]!.push(change(device("b", { removed: true })));
    await until(store, () => !store.devices.has("b"));
    expect(names(store)).toEqual({ a: "Brisket smoker", c: "Grill c" });

    // Nothing polls: no timer is left waiting.
    expect(vi.getTimerCount()).toBe(0);
  });

  it("after a break, subscribes again and the new snapshot drops devices it does not name", async () => {
    await until(store, () => store.devicesStatus === "live");
    gateway.deviceStreams[0]!.push(snapshot(device("a"), device("b")));
    await until(store, () => store.devices.size === 2);

    gateway.deviceStreams[0]!.push(new Error("connection lost"));
    await until(store, () => store.devicesStatus === "reconnecting");
    expect(store.error).toBe("connection lost");
    await vi.advanceTimersByTimeAsync(15_000); // the backoff
    await until(store, () => store.devicesStatus === "live");
    expect(gateway.deviceStreams).toHaveLength(2);
    expect(gateway.deviceStreams[0]!.signal.aborted).toBe(false); // a new stream, not the old one

    // Meanwhile b was removed, a renamed and c registered.
    gateway.deviceStreams[1]!.push(snapshot(device("a", { name: "Kamado" }), device("c")));
    await until(store, () => store.devices.has("c"));
    expect(names(store)).toEqual({ a: "Kamado", c: "Grill c" });
    expect(store.error).toBe("");
    await until(store, () => gateway.latestRead.length === 3);
    expect(gateway.latestRead).toEqual(["a", "b", "c"]);
  });

  it("stops both feeds; cleared, it shows nothing and takes nothing more", async () => {
    await until(store, () => store.devicesStatus === "live");
    gateway.deviceStreams[0]!.push(snapshot(device("a")));
    await until(store, () => store.devices.size === 1);

    store.clear();
    gateway.deviceStreams[0]!.push(change(device("b")));
    await vi.advanceTimersByTimeAsync(0);
    expect(store.devices.size).toBe(0);

    await store.stop();
    expect(gateway.deviceStreams[0]!.signal.aborted).toBe(true);
    expect(gateway.trendStreams[0]!.signal.aborted).toBe(true);
    expect(store.devicesStatus).toBe("stopped");
  });
});
