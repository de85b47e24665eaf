// Live updates that survive disconnects: resume positions (or a fresh snapshot), backoff,
// no duplicates.

import { isUnauthenticated } from "./session";

/** What the feed needs of an update: its position in the derived topic. */
export interface Positioned {
  partition: number;
  offset: bigint;
}

/** What a stream without positions sends: it opens with a snapshot of everything it
 * follows, so reopening it afresh after a break loses nothing. */
export interface Snapshotted {
  snapshot: boolean;
}

const positioned = (ev: Positioned | Snapshotted): ev is Positioned => "offset" in ev;

/** The next offset expected per partition; drops anything before it (a repeat). */
export class ResumeTracker {
  private readonly next = new Map<number, bigint>();

  /** True when `ev` is new; records it. */
  accept(ev: Positioned): boolean {
    const expected = this.next.get(ev.partition);
    if (expected !== undefined && ev.offset < expected) return false;
    this.next.set(ev.partition, ev.offset + 1n);
    return true;
  }

  /** Starts tracking `partition` at `offset` unless an update of it was seen already. */
  seed(partition: number, offset: bigint): void {
    if (!this.next.has(partition)) this.next.set(partition, offset);
  }

  /** The `resume` map of a subscription request. */
  toRequest(): { [partition: number]: bigint } {
    return Object.fromEntries(this.next);
  }

  get empty(): boolean {
    return this.next.size === 0;
  }
}

/** The response header in which the gateway says where each partition starts. */
export const START_OFFSETS = "emberline-start-offsets";

/** Parses a `START_OFFSETS` value (`3=128,0=7`); malformed pairs are skipped. */
export function parseStartOffsets(value: string | null): [number, bigint][] {
  if (!value) return [];
  const pairs: [number, bigint][] = [];
  for (const pair of value.split(",")) {
    const m = /^\s*(\d+)=(\d+)\s*$/.exec(pair);
    if (m) pairs.push([Number(m[1]), BigInt(m[2]!)]);
  }
  return pairs;
}

/** Exponential backoff with full jitter: attempt 0 → up to `base`, capped at `max`. */
export function backoffDelay(attempt: number, base = 500, max = 15_000, random = Math.random): number {
  const ceiling = Math.min(max, base * 2 ** Math.min(attempt, 20));
  return Math.max(base / 2, Math.floor(random() * ceiling));
}

export type FeedStatus = "connecting" | "live" | "reconnecting" | "stopped";

export interface FeedOptions<E extends Positioned | Snapshotted> {
  /** Opens one subscription from `resume` (empty: from now; always empty for a stream of
   * snapshots); calls `opened` with the response headers once the server has accepted it. */
  open: (
    resume: { [partition: number]: bigint },
    signal: AbortSignal,
    opened: (headers?: Headers) => void,
  ) => AsyncIterable<E>;
  onEvent: (ev: E) => void;
  onStatus: (status: FeedStatus, detail?: string) => void;
  /** Waits `ms` unless aborted (injectable for tests). */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  random?: () => number;
  /** The clock, ms (injectable for tests). */
  now?: () => number;
}

/** How often a live stream ended for expired credentials is reopened at once and quietly. */
export const QUIET_REOPEN_MS = 60_000;

const realSleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(t);
      resolve();
    });
  });

/**
 * One subscription per view. When the stream breaks it says so, waits with backoff and
 * re-opens from the positions after the last update it delivered, so the view gets every
 * update once: nothing skipped, nothing repeated. A stream of snapshots is re-opened from
 * scratch: its first update replaces what the view holds.
 */
export class LiveFeed<E extends Positioned | Snapshotted> {
  readonly resume = new ResumeTracker();
  private readonly abort = new AbortController();
  private running: Promise<void> | undefined;

  constructor(private readonly options: FeedOptions<E>) {}

  start(): this {
    this.running ??= this.loop();
    return this;
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.running;
  }

  private async loop(): Promise<void> {
    const { open, onEvent, onStatus } = this.options;
    const sleep = this.options.sleep ?? realSleep;
    const signal = this.abort.signal;
    const now = this.options.now ?? Date.now;
    let attempt = 0;
    let quietAt = Number.NEGATIVE_INFINITY;
    onStatus("connecting");
    while (!signal.aborted) {
      try {
        const opened = (headers?: Headers) => {
          // Where the stream starts: a break before the first update resumes from there,
          // not from "now", so nothing appended meanwhile is skipped.
          for (const [p, o] of parseStartOffsets(headers?.get(START_OFFSETS) ?? null)) this.resume.seed(p, o);
          if (!this.live) {
            this.live = true;
            attempt = 0;
            onStatus("live");
          }
        };
        for await (const ev of open(this.resume.toRequest(), signal, opened)) {
          opened();
          if (!positioned(ev) || this.resume.accept(ev)) onEvent(ev);
        }
        if (signal.aborted) break;
        throw new Error("the server ended the stream");
      } catch (e) {
        if (signal.aborted) break;
        if (this.live && isUnauthenticated(e) && now() - quietAt >= QUIET_REOPEN_MS) {
          // The server ends a subscription when the access cookie it was opened with runs
          // out. Reopen at once from where it stopped (the opening renews the cookie), and
          // do not call that a lost connection. At most once a minute: no tight loop.
          quietAt = now();
          continue;
        }
        this.live = false;
        const delay = backoffDelay(attempt++, 500, 15_000, this.options.random);
        onStatus("reconnecting", e instanceof Error ? e.message : String(e));
        await sleep(delay, signal);
      }
    }
    onStatus("stopped");
  }

  private live = false;
}
