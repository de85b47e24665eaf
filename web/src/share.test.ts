import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { AuthService, DeviceService, TrendEventSchema, TrendService } from "./gen/emberline/v1/emberline_pb";
import { canShare, isSharePath, linkEnded, pageControls, shareInterceptor, shareTokenOf, shareUrl } from "./share";

const TOKEN = "ems_Zq3-_x9AbCdEfGhIjKlMnOpQrStUvWxYz0123456789ab";

describe("share mode", () => {
  it("is the pages under /s/ and no other", () => {
    expect(isSharePath(`/s/${TOKEN}`)).toBe(true);
    expect(isSharePath("/s/")).toBe(true);
    for (const p of ["/", "", "/s", "/share/x", "/S/x", "/x/s/abc", "/index.html"]) expect(isSharePath(p)).toBe(false);
  });

  it("takes the token from the rest of the path", () => {
    expect(shareTokenOf(`/s/${TOKEN}`)).toBe(TOKEN);
    expect(shareTokenOf(`/s/${TOKEN}/`)).toBe(TOKEN);
    expect(shareTokenOf(`/s/${encodeURIComponent(TOKEN)}`)).toBe(TOKEN);
  });

  it("is no share page without the /s/ prefix", () => {
    expect(shareTokenOf("/")).toBeUndefined();
    expect(shareTokenOf("/signin")).toBeUndefined();
    expect(shareTokenOf(`/x/s/${TOKEN}`)).toBeUndefined();
  });

  it("has no token when the rest is empty or could not be one", () => {
    expect(shareTokenOf("/s/")).toBe("");
    expect(shareTokenOf("/s")).toBeUndefined();
    expect(shareTokenOf("/s/a/b")).toBe("");
    expect(shareTokenOf("/s/a%20b")).toBe("");
    expect(shareTokenOf("/s/%E0%A4%A")).toBe(""); // malformed escape
    expect(shareTokenOf("/s/abc%0d%0aX-Evil:%201")).toBe("");
  });
});

describe("share links", () => {
  it("are the page's origin and the server's path", () => {
    expect(shareUrl("http://127.0.0.1:8080", `/s/${TOKEN}`)).toBe(`http://127.0.0.1:8080/s/${TOKEN}`);
    expect(shareUrl("https://grill.example/", `/s/${TOKEN}`)).toBe(`https://grill.example/s/${TOKEN}`);
    expect(shareUrl("https://grill.example", `s/${TOKEN}`)).toBe(`https://grill.example/s/${TOKEN}`);
  });

  it("are offered to owners and cooks, not to viewers, API tokens or share links", () => {
    expect(canShare({ role: "owner", scope: "" })).toBe(true);
    expect(canShare({ role: "cook", scope: "" })).toBe(true);
    expect(canShare({ role: "viewer", scope: "" })).toBe(false);
    expect(canShare({ role: "", scope: "control" })).toBe(false);
    expect(canShare({ role: "", scope: "share" })).toBe(false);
    expect(canShare(undefined)).toBe(false);
  });
});

describe("page controls", () => {
  it("are all there for a signed-in page", () => {
    expect(Object.values(pageControls("signed-in")).every(Boolean)).toBe(true);
  });

  it("are none on a share link's page: no acknowledging, sharing, exporting, navigating or session", () => {
    const can = pageControls("share");
    expect(can).toEqual({ navigation: false, acknowledge: false, export: false, share: false, session: false });
  });
});

describe("share interceptor", () => {
  function harness(valid: { now: boolean }) {
    const seen: (string | null)[] = [];
    let ended = 0;
    const refused = () => new ConnectError("the share link is unknown or revoked", Code.Unauthenticated);
    const transport = createRouterTransport(
      (router) => {
        router.service(AuthService, {
          whoAmI(_req, ctx) {
            seen.push(ctx.requestHeader.get("authorization"));
            if (!valid.now) throw refused();
            return { name: "share link 1", scope: "share", cookId: "c1" };
          },
        });
        router.service(DeviceService, {
          listDevices(_req, ctx) {
            seen.push(ctx.requestHeader.get("authorization"));
            throw new ConnectError("a share link shows one cook", Code.PermissionDenied);
          },
        });
        router.service(TrendService, {
          async *subscribeTrends(req, ctx) {
            seen.push(ctx.requestHeader.get("authorization"));
            if (!valid.now) throw refused();
            yield create(TrendEventSchema, { deviceId: req.deviceId, probeId: "pit", offset: 1n });
          },
        });
      },
      { transport: { interceptors: [shareInterceptor(TOKEN, () => ended++)] } },
    );
    return {
      seen,
      ended: () => ended,
      auth: createClient(AuthService, transport),
      devices: createClient(DeviceService, transport),
      trends: createClient(TrendService, transport),
    };
  }

  it("sends the token as a bearer on every call, unary and streaming", async () => {
    const t = harness({ now: true });
    const who = await t.auth.whoAmI({});
    expect(who.cookId).toBe("c1");
    const got: string[] = [];
    for await (const ev of t.trends.subscribeTrends({ deviceId: "grill" })) got.push(ev.probeId);
    expect(got).toEqual(["pit"]);
    expect(t.seen).toEqual([`Bearer ${TOKEN}`, `Bearer ${TOKEN}`]);
    expect(t.ended()).toBe(0);
  });

  it("says the link ended when a call is refused as Unauthenticated, and retries nothing", async () => {
    const t = harness({ now: false });
    const e = await t.auth.whoAmI({}).catch((err: unknown) => err);
    expect(linkEnded(e)).toBe(true);
    expect(t.ended()).toBe(1);
    await expect(
      (async () => {
        for await (const _ of t.trends.subscribeTrends({ deviceId: "grill" })) void _;
      })(),
    ).rejects.toThrow(/revoked/);
    expect(t.ended()).toBe(2);
    expect(t.seen.length).toBe(2); // one attempt each
  });

  it("does not end the link for other refusals", async () => {
    const t = harness({ now: true });
    const e = await t.devices.listDevices({}).catch((err: unknown) => err);
    expect(ConnectError.from(e).code).toBe(Code.PermissionDenied);
    expect(linkEnded(e)).toBe(false);
    expect(t.ended()).toBe(0);
  });
});
