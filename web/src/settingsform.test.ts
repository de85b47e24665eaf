import { describe, expect, it } from "vitest";
import { placeRefusal, recipients } from "./settingsform";

describe("placeRefusal", () => {
  it("puts a refusal next to the field it names", () => {
    expect(placeRefusal('[invalid_argument] url: "ftp://x" is not http(s)')).toEqual({
      field: "url",
      text: '"ftp://x" is not http(s)',
    });
    expect(placeRefusal("smtp_url: \"x\" is not smtp:// or smtps://").field).toBe("smtp_url");
  });

  it("keeps anything else for the whole form", () => {
    expect(placeRefusal("[unavailable] settings store: the log is down")).toEqual({
      field: undefined,
      text: "settings store: the log is down",
    });
    expect(placeRefusal("password: nope").field).toBeUndefined();
  });
});

describe("recipients", () => {
  it("splits on commas, semicolons and spaces", () => {
    expect(recipients(" a@x.org, b@y.org;c@z.org  d@w.org,")).toEqual(["a@x.org", "b@y.org", "c@z.org", "d@w.org"]);
    expect(recipients("  ")).toEqual([]);
  });
});
