// Temperature units: conversion, formatting, and the per-browser preference.

export type Unit = "C" | "F";

const KEY = "emberline.unit";

export function fromCelsius(c: number, unit: Unit): number {
  return unit === "F" ? (c * 9) / 5 + 32 : c;
}

export function rateFromCelsius(cPerMin: number, unit: Unit): number {
  return unit === "F" ? (cPerMin * 9) / 5 : cPerMin;
}

/** "104.3°" in the chosen unit, or an em dash when there is no value. */
export function formatTemp(c: number | null | undefined, unit: Unit, digits = 1): string {
  if (c === null || c === undefined || !Number.isFinite(c)) return "—";
  return `${fromCelsius(c, unit).toFixed(digits)}°`;
}

/** "+0.42°/min" (sign always shown), or "—" while unknown. */
export function formatRate(cPerMin: number | null | undefined, unit: Unit): string {
  if (cPerMin === null || cPerMin === undefined || !Number.isFinite(cPerMin)) return "—";
  const v = rateFromCelsius(cPerMin, unit);
  const sign = v > 0 ? "+" : v < 0 ? "−" : "±";
  return `${sign}${Math.abs(v).toFixed(2)}°/min`;
}

export function loadUnit(storage: Pick<Storage, "getItem"> | undefined): Unit {
  return storage?.getItem(KEY) === "F" ? "F" : "C";
}

export function saveUnit(storage: Pick<Storage, "setItem"> | undefined, unit: Unit): void {
  storage?.setItem(KEY, unit);
}
