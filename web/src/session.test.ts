import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, createRouterTransport, type StreamRequest, type StreamResponse } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import {
  AuthService,
  DeviceService,
  SubscribeTrendsRequestSchema,
  TrendEventSchema,
  TrendService,
  type TrendEvent,
} from "./gen/emberline/v1/emberline_pb";
import { Renewer, refusedByServer, renewingInterceptor } from "./session";

const SESSIONLESS = new Set(["Setup", "SignIn", "Refresh", "SignOut"]);
const tick = (ms = 5) => new Promise((r) => setTimeout(r, ms));

/** A gateway whose session expired: `refresh` renews it (when `refreshAnswer` allows). */
function harness(opts: { refreshAnswer?: Code | "ok"; refreshWorks?: boolean } = {}) {
  const server = { authorized: false, listCalls: 0, refreshCalls: 0, signInCalls: 0, streamCalls: 0, streamRequests: [] as string[], signedOut: 0 };
  const refused = () => new ConnectError("expired", Code.Unauthenticated);
  let auth!: ReturnType<typeof createClient<typeof AuthService>>;
  const renewer = new Renewer(
    async () => {
      await auth.refresh({ cookie: true });
    },
    () => server.signedOut++,
  );
  const transport = createRouterTransport(
    (router) => {
      router.service(DeviceService, {
        async listDevices() {
          server.listCalls++;
          await tick(2);
          if (!server.authorized) throw refused();
          return { devices: [] };
        },
      });
      router.service(AuthService, {
        async refresh() {
          server.refreshCalls++;
          await tick(10);
          const answer = opts.refreshAnswer ?? "ok";
          if (answer !== "ok") throw new ConnectError("no session", answer);
          if (opts.refreshWorks ?? true) server.authorized = true;
          return {};
        },
        async signIn() {
          server.signInCalls++;
          throw new ConnectError("wrong user name or password", Code.Unauthenticated);
        },
        async whoAmI() {
          if (!server.authorized) throw refused();
          return { name: "owner", role: "owner" };
        },
      });
      router.service(TrendService, {
        async *subscribeTrends(req) {
          server.streamCalls++;
          server.streamRequests.push(req.deviceId);
          if (!server.authorized) throw refused();
          yield create(TrendEventSchema, { deviceId: req.deviceId, probeId: "pit", offset: 1n });
          yield create(TrendEventSchema, { deviceId: req.deviceId, probeId: "pit", offset: 2n });
        },
      });
    },
    {
      transport: {
        interceptors: [
          renewingInterceptor(renewer, (req) => req.service.typeName === AuthService.typeName && SESSIONLESS.has(req.method.name), () => server.signedOut++),
        ],
      },
    },
  );
  auth = createClient(AuthService, transport);
  return { server, renewer, auth, devices: createClient(DeviceService, transport), trends: createClient(TrendService, transport) };
}

async function collect(it: AsyncIterable<TrendEvent>): Promise<string[]> {
  const out: string[] = [];
  for await (const ev of it) out.push(`${ev.deviceId}/${ev.offset}`);
  return out;
}

describe("renewing interceptor", () => {
  it("renews once for concurrent refusals and retries each call once", async () => {
    const { server, devices } = harness();
    const results = await Promise.allSettled([devices.listDevices({}), devices.listDevices({}), devices.listDevices({})]);
    expect(results.map((r) => r.status)).toEqual(["fulfilled", "fulfilled", "fulfilled"]);
    expect(server.refreshCalls).toBe(1);
    expect(server.listCalls).toBe(6);
    expect(server.signedOut).toBe(0);
  });

  it("says signed out once when the renewal is refused, and retries nothing", async () => {
    const { server, devices } = harness({ refreshAnswer: Code.Unauthenticated });
    const results = await Promise.allSettled([devices.listDevices({}), devices.listDevices({})]);
    for (const r of results) {
      expect(r.status).toBe("rejected");
      expect(ConnectError.from((r as PromiseRejectedResult).reason).code).toBe(Code.Unauthenticated);
    }
    expect(server.refreshCalls).toBe(1);
    expect(server.listCalls).toBe(2);
    expect(server.signedOut).toBe(1);
  });

  it("does not loop when the renewed credentials are refused too", async () => {
    const { server, devices } = harness({ refreshWorks: false });
    await expect(devices.listDevices({})).rejects.toMatchObject({ code: Code.Unauthenticated });
    expect(server.refreshCalls).toBe(1);
    expect(server.listCalls).toBe(2);
    expect(server.signedOut).toBe(1);
  });

  it("keeps the session when the renewal could not reach the server", async () => {
    const { server, devices } = harness({ refreshAnswer: Code.Unavailable });
    await expect(devices.listDevices({})).rejects.toMatchObject({ code: Code.Unauthenticated });
    expect(server.signedOut).toBe(0);
  });

  it("leaves a refused sign-in alone: a wrong password is an answer", async () => {
    const { server, auth } = harness();
    await expect(auth.signIn({ user: "owner", password: "nope", cookie: true })).rejects.toMatchObject({
      code: Code.Unauthenticated,
      rawMessage: "wrong user name or password",
    });
    expect(server.signInCalls).toBe(1);
    expect(server.refreshCalls).toBe(0);
  });

  it("renews for WhoAmI (the page-load check)", async () => {
    const { server, auth } = harness();
    await expect(auth.whoAmI({})).resolves.toMatchObject({ name: "owner" });
    expect(server.refreshCalls).toBe(1);
  });

  it("retries a stream refused before its first update, with the same request", async () => {
    const { server, trends } = harness();
    const got = await collect(trends.subscribeTrends({ deviceId: "sim-1" }));
    expect(got).toEqual(["sim-1/1", "sim-1/2"]);
    expect(server.refreshCalls).toBe(1);
    expect(server.streamRequests).toEqual(["sim-1", "sim-1"]);
  });

  it("refuses to renew while signing out", async () => {
    const { server, renewer, devices } = harness();
    await renewer.hold();
    await expect(devices.listDevices({})).rejects.toMatchObject({ code: Code.Unauthenticated });
    expect(server.refreshCalls).toBe(0);
    renewer.release();
    await expect(devices.listDevices({})).resolves.toBeDefined();
    expect(server.refreshCalls).toBe(1);
  });
});

describe("Renewer", () => {
  it("shares one renewal among concurrent callers and starts a new one after it", async () => {
    let renewals = 0;
    let finish!: () => void;
    const renewer = new Renewer(
      () =>
        new Promise<void>((resolve) => {
          renewals++;
          finish = resolve;
        }),
      () => {},
    );
    const a = renewer.renewSince(0);
    const b = renewer.renewSince(0);
    await tick();
    expect(renewals).toBe(1);
    finish();
    expect(await Promise.all([a, b])).toEqual([true, true]);
    expect(renewer.generation).toBe(1);
    // A call sent before that renewal and refused after it needs only a retry.
    expect(await renewer.renewSince(0)).toBe(true);
    expect(renewals).toBe(1);
    // A call refused with the new credentials starts a new renewal.
    const c = renewer.renewSince(1);
    await tick();
    expect(renewals).toBe(2);
    finish();
    expect(await c).toBe(true);
  });

  it("tells the server's refusal from an unreachable server", () => {
    expect(refusedByServer(new ConnectError("no", Code.Unauthenticated))).toBe(true);
    expect(refusedByServer(new ConnectError("no", Code.InvalidArgument))).toBe(true);
    expect(refusedByServer(new ConnectError("down", Code.Unavailable))).toBe(false);
    expect(refusedByServer(new TypeError("Failed to fetch"))).toBe(false);
  });
});

describe("renewing interceptor, refusal in the response headers", () => {
  it("retries a server stream whose opening was refused, re-sending its request", async () => {
    let renewals = 0;
    const renewer = new Renewer(async () => {
      renewals++;
    }, () => {});
    const sent: string[] = [];
    let attempts = 0;
    const next = async (req: StreamRequest): Promise<StreamResponse> => {
      attempts++;
      for await (const m of req.message) sent.push((m as unknown as { deviceId: string }).deviceId);
      if (attempts === 1) throw new ConnectError("expired", Code.Unauthenticated);
      return {
        ...req,
        header: new Headers(),
        trailer: new Headers(),
        message: (async function* () {
          yield create(TrendEventSchema, { deviceId: "sim-1", offset: 7n });
        })(),
      } as unknown as StreamResponse;
    };
    const intercept = renewingInterceptor(renewer, () => false, () => {})(next as never);
    const req = {
      stream: true,
      service: TrendService,
      method: TrendService.method.subscribeTrends,
      message: (async function* () {
        yield create(SubscribeTrendsRequestSchema, { deviceId: "sim-1" });
      })(),
    } as unknown as StreamRequest;
    const res = (await intercept(req)) as StreamResponse;
    const got: unknown[] = [];
    for await (const m of res.message) got.push((m as TrendEvent).offset);
    expect(got).toEqual([7n]);
    expect(sent).toEqual(["sim-1", "sim-1"]);
    expect(renewals).toBe(1);
  });

  it("does not retry a stream that fails after delivering updates", async () => {
    let renewals = 0;
    const renewer = new Renewer(async () => {
      renewals++;
    }, () => {});
    const next = async (req: StreamRequest): Promise<StreamResponse> =>
      ({
        ...req,
        header: new Headers(),
        trailer: new Headers(),
        message: (async function* () {
          yield create(TrendEventSchema, { offset: 1n });
          throw new ConnectError("expired", Code.Unauthenticated);
        })(),
      }) as unknown as StreamResponse;
    const intercept = renewingInterceptor(renewer, () => false, () => {})(next as never);
    const req = {
      stream: true,
      service: TrendService,
      method: TrendService.method.subscribeTrends,
      message: (async function* () {
        yield create(SubscribeTrendsRequestSchema, { deviceId: "sim-1" });
      })(),
    } as unknown as StreamRequest;
    const res = (await intercept(req)) as StreamResponse;
    const got: unknown[] = [];
    await expect(
      (async () => {
        for await (const m of res.message) got.push((m as TrendEvent).offset);
      })(),
    ).rejects.toMatchObject({ code: Code.Unauthenticated });
    expect(got).toEqual([1n]);
    expect(renewals).toBe(0);
  });
});
