import { describe, expect, it } from "vitest";
import { placeRefusal, placeRefusalIn, recipients } from "./settingsform";

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

describe("placeRefusalIn", () => {
  it("places a refusal among the fields of the form it is given", () => {
    const fields = ["name", "username", "password", "poll_interval_s"] as const;
    expect(placeRefusalIn("[invalid_argument] poll_interval_s must be at least 5", fields).field).toBeUndefined();
    expect(placeRefusalIn('[invalid_argument] poll_interval_s: "soon" is not a whole number', fields)).toEqual({
      field: "poll_interval_s",
      text: '"soon" is not a whole number',
    });
    expect(placeRefusalIn("password: required", fields).field).toBe("password");
    expect(placeRefusalIn("url: nope", fields).field).toBeUndefined();
  });
});

describe("recipients", () => {
  it("splits on commas, semicolons and spaces", () => {
    expect(recipients(" a@x.org, b@y.org;c@z.org  d@w.org,")).toEqual(["a@x.org", "b@y.org", "c@z.org", "d@w.org"]);
    expect(recipients("  ")).toEqual([]);
  });
});
