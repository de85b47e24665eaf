import { describe, expect, it } from "vitest";
import { formatRate, formatTemp, fromCelsius, loadUnit, saveUnit } from "./units";

describe("units", () => {
  it("converts Celsius to Fahrenheit", () => {
    expect(fromCelsius(100, "F")).toBe(212);
    expect(fromCelsius(-40, "F")).toBe(-40);
    expect(fromCelsius(93.3, "C")).toBe(93.3);
  });

  it("formats temperatures and rates in the chosen unit", () => {
    expect(formatTemp(93.34, "C")).toBe("93.3°");
    expect(formatTemp(100, "F")).toBe("212.0°");
    expect(formatTemp(undefined, "C")).toBe("—");
    expect(formatTemp(Number.NaN, "C")).toBe("—");
    expect(formatRate(0.5, "C")).toBe("+0.50°/min");
    expect(formatRate(-0.5, "F")).toBe("−0.90°/min");
    expect(formatRate(0, "C")).toBe("±0.00°/min");
    expect(formatRate(undefined, "C")).toBe("—");
  });

  it("remembers the unit per browser", () => {
    const store = new Map<string, string>();
    const storage = { getItem: (k: string) => store.get(k) ?? null, setItem: (k: string, v: string) => void store.set(k, v) };
    expect(loadUnit(storage)).toBe("C");
    saveUnit(storage, "F");
    expect(loadUnit(storage)).toBe("F");
    expect(loadUnit(undefined)).toBe("C");
  });
});
