import { describe, expect, it } from "vitest";
import { providerName } from "./provider";

describe("providerName", () => {
  it("names a provider by its issuer's host", () => {
    expect(providerName("https://login.example.com/realms/grills")).toBe("login.example.com");
    expect(providerName("http://127.0.0.1:4444")).toBe("127.0.0.1:4444");
  });

  it("keeps an issuer that is no URL as it is", () => {
    expect(providerName("not a url")).toBe("not a url");
  });
});
