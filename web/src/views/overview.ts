// Every device at a glance.

import { h } from "../dom";
import type { LiveStore } from "../store";
import type { Unit } from "../units";
import { deviceFacts, probeTiles } from "./probes";

export function renderOverview(root: HTMLElement, store: LiveStore, unit: Unit): void {
  const now = Date.now();
  const cards = [...store.devices.values()]
    .sort((a, b) => a.device.deviceId.localeCompare(b.device.deviceId))
    .map((d) =>
      h(
        "article",
        { class: "device", "data-device": d.device.deviceId },
        h(
          "header",
          {},
          h("h2", {}, h("a", { href: `#/device/${encodeURIComponent(d.device.deviceId)}` }, d.device.name || d.device.deviceId)),
          deviceFacts(d),
        ),
        probeTiles(d, unit, now),
      ),
    );
  root.replaceChildren(
    ...(cards.length
      ? cards
      : [h("p", { class: "empty" }, store.error ? `Cannot reach Emberline: ${store.error}` : "No devices yet.")]),
  );
}
