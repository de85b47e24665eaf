import { describe, expect, it } from "vitest";
import { cookCsv } from "./format";

describe("cookCsv", () => {
  it("puts each probe in a column, one row per time, blanks where a probe has no reading", () => {
    const csv = cookCsv([
      { probeId: "pit", points: [{ eventTimeMs: 2000n, temperatureC: 110 }, { eventTimeMs: 1000n, temperatureC: 108.5 }] },
      { probeId: "meat-1", points: [{ eventTimeMs: 2000n, temperatureC: 40 }, { eventTimeMs: 3000n }] },
    ]);
    expect(csv).toBe(
      "time,pit (°C),meat-1 (°C)\r\n" +
        "1970-01-01T00:00:01.000Z,108.5,\r\n" +
        "1970-01-01T00:00:02.000Z,110,40\r\n" +
        "1970-01-01T00:00:03.000Z,,\r\n",
    );
  });
});
