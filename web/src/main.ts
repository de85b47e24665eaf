// Emberline's web UI: routes, header controls, live store, service worker.

import "./style.css";
import { h } from "./dom";
import { LiveStore } from "./store";
import { loadUnit, saveUnit, type Unit } from "./units";
import { DeviceView } from "./views/device";
import { renderOverview } from "./views/overview";
import { renderPlan } from "./views/plan";

const storage = (() => {
  try {
    return window.localStorage;
  } catch {
    return undefined;
  }
})();

let unit: Unit = loadUnit(storage);

type Theme = "light" | "dark";
const prefersDark = window.matchMedia?.("(prefers-color-scheme: dark)").matches;
let theme: Theme = (storage?.getItem("emberline.theme") as Theme | null) ?? (prefersDark ? "dark" : "light");
document.documentElement.dataset.theme = theme;

const main = h("main", { id: "app" });
const status = h("span", { class: "status", role: "status", "aria-live": "polite" });
const unitButton = h("button", { type: "button", class: "unit", "aria-label": "Temperature unit" });
const themeButton = h("button", { type: "button", class: "theme", "aria-label": "Light or dark theme" });
document.body.replaceChildren(
  h("header", { class: "top" }, h("a", { href: "#/", class: "brand" }, "Emberline"), h("a", { href: "#/plan", class: "nav" }, "Plan"), status, unitButton, themeButton),
  main,
);

let store: LiveStore | undefined;
let view: DeviceView | undefined;
let ticker: ReturnType<typeof setInterval> | undefined;

function showStatus(): void {
  const s = store?.status ?? "connecting";
  const text = { connecting: "Connecting…", live: "Live", reconnecting: "Connection lost — reconnecting…", stopped: "Stopped" }[s];
  status.textContent = text;
  status.dataset.state = s;
  status.title = store?.statusDetail ?? "";
}

function render(): void {
  unitButton.textContent = unit === "C" ? "°C" : "°F";
  themeButton.textContent = theme === "dark" ? "☀" : "☾";
  if (planning) {
    // The plan page keeps no live feed: nothing to report.
    status.textContent = "";
    delete status.dataset.state;
    return;
  }
  showStatus();
  if (store && !view) renderOverview(main, store, unit);
}

let planning = false;

async function route(): Promise<void> {
  planning = window.location.hash === "#/plan";
  if (planning) {
    view?.destroy();
    view = undefined;
    await store?.stop();
    store = undefined;
    renderPlan(main, unit);
    render();
    return;
  }
  const match = /^#\/device\/(.+)$/.exec(window.location.hash);
  const deviceId = match ? decodeURIComponent(match[1]!) : "";
  view?.destroy();
  view = undefined;
  await store?.stop();
  store = new LiveStore(deviceId);
  store.on(render);
  if (deviceId) view = new DeviceView(main, store, deviceId, unit);
  render();
  await store.start();
}

unitButton.addEventListener("click", () => {
  unit = unit === "C" ? "F" : "C";
  saveUnit(storage, unit);
  view?.setUnit(unit);
  if (planning) renderPlan(main, unit);
  render();
});
themeButton.addEventListener("click", () => {
  theme = theme === "dark" ? "light" : "dark";
  storage?.setItem("emberline.theme", theme);
  document.documentElement.dataset.theme = theme;
  render();
  view?.setUnit(unit); // redraw the chart in the theme's colours
});

window.addEventListener("hashchange", () => void route());
// Ages ("12 s ago") move even when no update arrives.
ticker = setInterval(() => {
  if (view) view.renderTiles();
  else render();
}, 1_000);
void ticker;

// Test hook: what the chart holds and the feed's state.
(window as unknown as { __emberline: unknown }).__emberline = {
  chart: () => view?.snapshot() ?? {},
  stored: (probe: string, from: number, to: number) => view?.storedTimes(probe, from, to) ?? Promise.resolve([]),
  status: () => store?.status,
  insight: () => view?.insightFeedState(),
};

void route();

if ("serviceWorker" in navigator && window.location.protocol === "http:" && window.location.hostname !== "") {
  void navigator.serviceWorker.register("/sw.js").catch(() => {});
}
