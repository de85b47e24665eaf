// Keeping the session alive: when a call is refused for want of credentials (the 15-minute
// access cookie ran out), renew them once with the refresh cookie and retry the call once.
// Concurrent refusals share one renewal: the server rotates the refresh cookie on each use
// and treats a reused one as theft, so two renewals must never race.

import { Code, ConnectError, type Interceptor, type StreamRequest, type StreamResponse, type UnaryRequest } from "@connectrpc/connect";

/** Whether `e` is a refusal for missing or expired credentials. */
export function isUnauthenticated(e: unknown): boolean {
  return e instanceof ConnectError && e.code === Code.Unauthenticated;
}

/** Whether a failed renewal is the server's answer (the session is over) rather than the
 * network or the server being away (the session may well still be good). */
export function refusedByServer(e: unknown): boolean {
  const code = e instanceof ConnectError ? e.code : Code.Unknown;
  return ![Code.Unavailable, Code.Unknown, Code.Canceled, Code.DeadlineExceeded, Code.Aborted].includes(code);
}

/**
 * Renews credentials at most once at a time: callers arriving while a renewal runs wait for
 * it rather than starting their own. A call that was refused after a renewal succeeded (it
 * was sent with the old credentials) needs no new renewal, only a retry.
 */
export class Renewer {
  /** Bumped by each successful renewal. */
  generation = 0;
  private running: Promise<boolean> | undefined;

  /**
   * @param renew asks the server for new credentials; throws when it refuses.
   * @param signedOut called once per renewal the server refused.
   */
  constructor(
    private readonly renew: () => Promise<void>,
    private readonly signedOut: () => void,
  ) {}

  /** While signing out no renewal may start: one racing the sign-out could bring back
   * cookies of the session being ended. */
  private held = false;

  /** Credentials newer than `since` (a `generation`): true once there are. */
  renewSince(since: number): Promise<boolean> {
    if (this.generation !== since) return Promise.resolve(true);
    if (this.held) return Promise.resolve(false);
    this.running ??= Promise.resolve()
      .then(this.renew)
      .then(
        () => {
          this.generation++;
          return true;
        },
        (e: unknown) => {
          if (refusedByServer(e)) this.signedOut();
          return false;
        },
      )
      .finally(() => {
        this.running = undefined;
      });
    return this.running;
  }

  /** Refuses renewals from now on and waits for the one running, if any. */
  async hold(): Promise<void> {
    this.held = true;
    await this.running;
  }

  /** Renews again (signed in anew). */
  release(): void {
    this.held = false;
  }
}

/** A server-streaming request's one message, readable once per attempt. */
async function* once<T>(message: T): AsyncGenerator<T> {
  yield message;
}

/**
 * The interceptor: a call (unary, or a server stream before its first message) refused as
 * Unauthenticated is retried once after a renewal. Calls `exempt` says so (signing in,
 * renewing, signing out — their refusals are answers, not expired credentials) pass through.
 * A retry refused again means the new credentials do not work either: signed out, no loop.
 */
export function renewingInterceptor(renewer: Renewer, exempt: (req: UnaryRequest | StreamRequest) => boolean, signedOut: () => void): Interceptor {
  return (next) => async (req) => {
    if (exempt(req)) return next(req);
    if (!req.stream) {
      const since = renewer.generation;
      try {
        return await next(req);
      } catch (e) {
        if (!isUnauthenticated(e) || !(await renewer.renewSince(since))) throw e;
        try {
          return await next(req);
        } catch (again) {
          if (isUnauthenticated(again)) signedOut();
          throw again;
        }
      }
    }
    if (req.method.methodKind !== "server_streaming") return next(req);
    // The request's message iterable reads once: keep its message for the retry.
    const first = await req.message[Symbol.asyncIterator]().next();
    const attempt = (): StreamRequest => ({ ...req, message: first.done ? req.message : once(first.value) });
    let retried = false;
    const retry = async (e: unknown, since: number): Promise<StreamResponse> => {
      if (retried || !isUnauthenticated(e) || !(await renewer.renewSince(since))) throw e;
      retried = true;
      try {
        return (await next(attempt())) as StreamResponse;
      } catch (again) {
        if (isUnauthenticated(again)) signedOut();
        throw again;
      }
    };
    const since = renewer.generation;
    let res: StreamResponse;
    try {
      res = (await next(attempt())) as StreamResponse;
    } catch (e) {
      res = await retry(e, since);
      if (retried) return res;
    }
    // Some servers refuse in the body rather than the headers: the stream then fails before
    // its first message, and is retried the same way.
    const opened = res;
    async function* messages(): AsyncGenerator<unknown> {
      let delivered = false;
      try {
        for await (const m of opened.message) {
          delivered = true;
          yield m;
        }
      } catch (e) {
        if (delivered || retried) throw e;
        const again = await retry(e, since);
        yield* again.message;
        again.trailer.forEach((v, k) => opened.trailer.set(k, v));
      }
    }
    return { ...opened, message: messages() } as StreamResponse;
  };
}
