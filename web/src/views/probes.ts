// Probe tiles: the big number, its trend, its target and how old it is.

import { h } from "../dom";
import { formatAge, isStale } from "../format";
import { type DeviceNow, deviceInterval } from "../store";
import { formatRate, formatTemp, type Unit } from "../units";

export function probeLabel(d: DeviceNow, probeId: string): string {
  return d.device.probeLabels[probeId] ?? probeId;
}

export function orderedProbes(d: DeviceNow): string[] {
  return [...d.probes.keys()].sort((a, b) =>
    a === "pit" ? -1 : b === "pit" ? 1 : a.localeCompare(b, undefined, { numeric: true }),
  );
}

export function probeTiles(d: DeviceNow, unit: Unit, now: number): HTMLElement {
  const interval = deviceInterval(d);
  return h(
    "div",
    { class: "probes" },
    orderedProbes(d).map((id) => {
      const p = d.probes.get(id)!;
      const age = now - p.receivedMs;
      const stale = isStale(age, interval);
      const unplugged = p.temperatureC === undefined;
      const target = d.device.targetsC[id];
      return h(
        "section",
        {
          class: `probe${stale ? " stale" : ""}${unplugged ? " unplugged" : ""}`,
          "data-probe": id,
          "aria-label": probeLabel(d, id),
        },
        h("h3", {}, probeLabel(d, id)),
        h("div", { class: "temp", "data-testid": "temp" }, unplugged ? "unplugged" : formatTemp(p.temperatureC, unit)),
        h("div", { class: "rate" }, unplugged ? "" : formatRate(p.rateCPerMin, unit)),
        target !== undefined ? h("div", { class: "target" }, `target ${formatTemp(target, unit, 0)}`) : null,
        h(
          "div",
          { class: "age", title: new Date(p.eventTimeMs).toLocaleString() },
          stale ? `stale · ${formatAge(age)}` : formatAge(age),
        ),
      );
    }),
  );
}

export function deviceFacts(d: DeviceNow): HTMLElement {
  const dev = d.device;
  const facts: string[] = [];
  if (dev.online === false) facts.push("offline");
  if (dev.batteryPercent !== undefined) facts.push(`battery ${Math.round(dev.batteryPercent)} %`);
  if (dev.signalDbm !== undefined) facts.push(`signal ${dev.signalDbm} dBm`);
  if (dev.statusNote) facts.push(dev.statusNote);
  return h("p", { class: "facts" }, facts.join(" · "));
}
