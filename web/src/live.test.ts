import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { backoffDelay, type FeedStatus, LiveFeed, parseStartOffsets, ResumeTracker, START_OFFSETS } from "./live";

interface Ev {
  partition: number;
  offset: bigint;
}

const ev = (partition: number, offset: number): Ev => ({ partition, offset: BigInt(offset) });

describe("ResumeTracker", () => {
  it("drops repeats and asks for the next offsets", () => {
    const r = new ResumeTracker();
    expect(r.empty).toBe(true);
    expect(r.accept(ev(0, 5))).toBe(true);
    expect(r.accept(ev(1, 2))).toBe(true);
    expect(r.accept(ev(0, 5))).toBe(false);
    expect(r.accept(ev(0, 4))).toBe(false);
    expect(r.accept(ev(0, 6))).toBe(true);
    expect(r.toRequest()).toEqual({ 0: 7n, 1: 3n });
  });
});

describe("parseStartOffsets", () => {
  it("reads partition=offset pairs and skips malformed ones", () => {
    expect(parseStartOffsets("3=128,0=7")).toEqual([[3, 128n], [0, 7n]]);
    expect(parseStartOffsets("3=128,x=1,4")).toEqual([[3, 128n]]);
    expect(parseStartOffsets(null)).toEqual([]);
    expect(parseStartOffsets("")).toEqual([]);
  });
});

describe("backoffDelay", () => {
  it("grows exponentially with jitter up to a cap", () => {
    expect(backoffDelay(0, 500, 15_000, () => 0.999)).toBeLessThan(500);
    expect(backoffDelay(3, 500, 15_000, () => 0.999)).toBeGreaterThan(3_900);
    expect(backoffDelay(30, 500, 15_000, () => 0.999)).toBeLessThanOrEqual(15_000);
    expect(backoffDelay(30, 500, 15_000, () => 0)).toBe(250);
  });
});

describe("LiveFeed", () => {
  it("reconnects from the resume position and delivers every update exactly once", async () => {
    // The server's log: partition 0 offsets 0..29. Each connection serves from the resume
    // position (re-sending the two before it, as an overlapping replay would), then breaks
    // after a few updates; the last one ends cleanly when everything is sent.
    const log = Array.from({ length: 30 }, (_, i) => ev(0, i));
    const resumes: ({ [p: number]: bigint })[] = [];
    const statuses: FeedStatus[] = [];
    const delivered: number[] = [];
    const delays: number[] = [];
    let connection = 0;
    let feed: LiveFeed<Ev> | undefined;
    const done = new Promise<void>((resolve) => {
      feed = new LiveFeed<Ev>({
        open: async function* (resume, _signal, opened) {
          resumes.push(resume);
          connection++;
          opened();
          const from = Number(resume[0] ?? 0n);
          const slice = log.slice(Math.max(0, from - 2), from + 7);
          for (const e of slice) yield e;
          if (from + 7 >= log.length) {
            resolve();
            await new Promise(() => {});
          }
          throw new Error(`connection ${connection} dropped`);
        },
        onEvent: (e) => delivered.push(Number(e.offset)),
        onStatus: (s) => statuses.push(s),
        sleep: async (ms) => void delays.push(ms),
        random: () => 0.5,
      }).start();
    });
    await done;
    expect(delivered).toEqual(log.map((e) => Number(e.offset)));
    expect(resumes[0]).toEqual({});
    expect(resumes[1]).toEqual({ 0: 7n });
    expect(statuses[0]).toBe("connecting");
    expect(statuses).toContain("reconnecting");
    expect(statuses.at(-1)).toBe("live");
    // Each drop after a successful open starts the backoff again.
    expect(new Set(delays).size).toBe(1);
    void feed?.stop();
  });

  it("resumes from where the stream started when it broke before the first update", async () => {
    // The first connection starts at offset 40 (said in its headers) and breaks before any
    // update; meanwhile 40 and 41 are appended. The second must ask for 40, not "now".
    const resumes: ({ [p: number]: bigint })[] = [];
    const delivered: number[] = [];
    let feed: LiveFeed<Ev> | undefined;
    const done = new Promise<void>((resolve) => {
      feed = new LiveFeed<Ev>({
        open: async function* (resume, _signal, opened) {
          resumes.push(resume);
          if (resumes.length === 1) {
            opened(new Headers({ [START_OFFSETS]: "0=40" }));
            throw new Error("dropped before the first update");
          }
          opened(new Headers({ [START_OFFSETS]: `0=${resume[0] ?? 42n}` }));
          for (let o = Number(resume[0] ?? 42n); o < 42; o++) yield ev(0, o);
          resolve();
          await new Promise(() => {});
        },
        onEvent: (e) => delivered.push(Number(e.offset)),
        onStatus: () => {},
        sleep: async () => {},
      }).start();
    });
    await done;
    expect(resumes[1]).toEqual({ 0: 40n });
    expect(delivered).toEqual([40, 41]);
    void feed?.stop();
  });

  it("reopens a stream of snapshots afresh: no resume position, every update delivered", async () => {
    // Each connection opens with a snapshot and sends one change; the first then breaks.
    const resumes: ({ [p: number]: bigint })[] = [];
    const delivered: string[] = [];
    let feed: LiveFeed<{ snapshot: boolean; n: number }> | undefined;
    const done = new Promise<void>((resolve) => {
      feed = new LiveFeed<{ snapshot: boolean; n: number }>({
        open: async function* (resume, _signal, opened) {
          resumes.push(resume);
          opened();
          yield { snapshot: true, n: resumes.length };
          yield { snapshot: false, n: resumes.length };
          if (resumes.length === 2) {
            resolve();
            await new Promise(() => {});
          }
          throw new Error("dropped");
        },
        onEvent: (e) => delivered.push(`${e.snapshot ? "snapshot" : "change"} ${e.n}`),
        onStatus: () => {},
        sleep: async () => {},
      }).start();
    });
    await done;
    expect(resumes).toEqual([{}, {}]);
    expect(delivered).toEqual(["snapshot 1", "change 1", "snapshot 2", "change 2"]);
    void feed?.stop();
  });

  it("reopens a stream ended for expired credentials at once, without saying the connection is lost", async () => {
    // Connections 1 and 2 deliver two updates each, then the server ends them as
    // Unauthenticated (their access cookie ran out); the third stays open.
    const statuses: FeedStatus[] = [];
    const resumes: ({ [p: number]: bigint })[] = [];
    const delivered: number[] = [];
    const delays: number[] = [];
    let clock = 1_000_000;
    let feed: LiveFeed<Ev> | undefined;
    const done = new Promise<void>((resolve) => {
      feed = new LiveFeed<Ev>({
        open: async function* (resume, _signal, opened) {
          resumes.push(resume);
          opened();
          const from = Number(resume[0] ?? 0n);
          yield ev(0, from);
          yield ev(0, from + 1);
          if (resumes.length === 3) {
            resolve();
            await new Promise(() => {});
          }
          clock += 5_000; // the second expiry comes too soon after the first to be quiet
          throw new ConnectError("the access token expired; refresh it", Code.Unauthenticated);
        },
        onEvent: (e) => delivered.push(Number(e.offset)),
        onStatus: (s) => statuses.push(s),
        sleep: async (ms) => void delays.push(ms),
        random: () => 0.5,
        now: () => clock,
      }).start();
    });
    await done;
    expect(delivered).toEqual([0, 1, 2, 3, 4, 5]);
    expect(resumes[1]).toEqual({ 0: 2n });
    // The first expiry: reopened at once and quietly; the second, 5 s later, is an
    // ordinary break (backoff, "reconnecting"), so a server refusing every stream cannot
    // make the page spin.
    expect(statuses).toEqual(["connecting", "live", "reconnecting", "live"]);
    expect(delays).toHaveLength(1);
    void feed?.stop();
  });
});
