import { Code } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { decide, parseRoute, parseSetupCode, returnRoute, type SessionState, setupErrorField } from "./routes";

describe("parseSetupCode", () => {
  it("takes the 16 hex digits of a setup link", () => {
    expect(parseRoute("#/setup/0123456789abcdef")).toEqual({ kind: "setup", code: "0123456789abcdef" });
    expect(parseRoute("#/setup/0123456789ABCDEF")).toEqual({ kind: "setup", code: "0123456789ABCDEF" });
    expect(parseSetupCode(" 00ff00ff00ff00ff ")).toBe("00ff00ff00ff00ff");
  });

  it("refuses a cut, overlong, non-hex or mangled code", () => {
    expect(parseRoute("#/setup/0123456789abcde")).toEqual({ kind: "setup", code: undefined });
    expect(parseRoute("#/setup/0123456789abcdef0")).toEqual({ kind: "setup", code: undefined });
    expect(parseRoute("#/setup/0123456789abcdeg")).toEqual({ kind: "setup", code: undefined });
    expect(parseRoute("#/setup/")).toEqual({ kind: "setup", code: undefined });
    expect(parseRoute("#/setup")).toEqual({ kind: "setup", code: undefined });
    expect(parseSetupCode("%E0%A4%A")).toBeUndefined();
  });
});

describe("parseRoute", () => {
  it("tells the sign-in page from the app's pages", () => {
    expect(parseRoute("#/signin")).toEqual({ kind: "signin" });
    expect(parseRoute("")).toEqual({ kind: "app", hash: "#/" });
    expect(parseRoute("#/device/sim-1")).toEqual({ kind: "app", hash: "#/device/sim-1" });
    expect(parseRoute("#/signinx")).toEqual({ kind: "app", hash: "#/signinx" });
    expect(parseRoute("#/setupx")).toEqual({ kind: "app", hash: "#/setupx" });
  });
});

describe("returnRoute", () => {
  it("returns to an app page only", () => {
    expect(returnRoute("#/device/sim-1")).toBe("#/device/sim-1");
    expect(returnRoute(undefined)).toBe("#/");
    expect(returnRoute("#/signin")).toBe("#/");
    expect(returnRoute("#/setup/0123456789abcdef")).toBe("#/");
    expect(returnRoute("https://elsewhere.example/")).toBe("#/");
  });
});

describe("decide (the route guard)", () => {
  const device = parseRoute("#/device/sim-1");
  const states: SessionState[] = ["unknown", "signed-in", "signed-out", "unverified"];

  it("shows an app page only when signed in or the server cannot say", () => {
    expect(decide(device, "unknown")).toEqual({ kind: "check" });
    expect(decide(device, "signed-in")).toEqual({ kind: "show" });
    expect(decide(device, "unverified")).toEqual({ kind: "show" });
    expect(decide(device, "signed-out")).toEqual({ kind: "redirect", to: "#/signin", remember: "#/device/sim-1" });
    expect(decide(parseRoute("#/plan"), "signed-out")).toEqual({ kind: "redirect", to: "#/signin", remember: "#/plan" });
  });

  it("never sends an auth page to sign in (no loop)", () => {
    for (const state of states) {
      for (const hash of ["#/signin", "#/setup/0123456789abcdef"]) {
        const d = decide(parseRoute(hash), state);
        if (d.kind === "redirect") expect(parseRoute(d.to).kind).toBe("app");
      }
    }
  });

  it("shows the sign-in page when signed out, and leaves it once signed in", () => {
    const signin = parseRoute("#/signin");
    expect(decide(signin, "signed-out")).toEqual({ kind: "show" });
    expect(decide(signin, "unknown")).toEqual({ kind: "check" });
    expect(decide(signin, "signed-in", "#/device/sim-1")).toEqual({ kind: "redirect", to: "#/device/sim-1" });
    expect(decide(signin, "signed-in")).toEqual({ kind: "redirect", to: "#/" });
  });

  it("shows the setup page without asking the server", () => {
    const setup = parseRoute("#/setup/0123456789abcdef");
    expect(decide(setup, "unknown")).toEqual({ kind: "show" });
    expect(decide(setup, "signed-out")).toEqual({ kind: "show" });
    expect(decide(setup, "signed-in")).toEqual({ kind: "redirect", to: "#/" });
  });
});

describe("setupErrorField", () => {
  it("puts the server's refusal next to the field it is about", () => {
    expect(setupErrorField(Code.InvalidArgument, "a password needs at least 8 characters")).toBe("password");
    expect(setupErrorField(Code.InvalidArgument, "a user name is 1 to 64 letters, digits, '.', '-' or '_'")).toBe("user");
    expect(setupErrorField(Code.Unauthenticated, "wrong or used setup code")).toBe("form");
    expect(setupErrorField(Code.Unauthenticated, "the user and password of this code")).toBe("form");
    expect(setupErrorField(Code.Internal, "disk full")).toBe("form");
  });
});
