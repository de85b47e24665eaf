// The page of a live share link (`/s/<token>`): one cook, read only. Whoever opens it sees
// the cook's device live (probe tiles, chart), its predictions and alerts, what is cooking
// and since when, and nothing to press that changes anything, signs in or out, or leads to
// other pages. When the link is revoked or expires the page says so and shows nothing more.

import { auth, cooks, shareEvents, shareToken } from "./api";
import { h } from "./dom";
import type { Cook } from "./gen/emberline/v1/emberline_pb";
import { linkEnded } from "./share";
import { LiveStore } from "./store";
import { loadUnit, saveUnit, type Unit } from "./units";
import { DeviceView } from "./views/device";
import { refusal } from "./views/signin";

const storage = (() => {
  try {
    return window.localStorage;
  } catch {
    return undefined;
  }
})();

// Display preferences only (never the token): the viewer's own unit and theme.
let unit: Unit = loadUnit(storage);
type Theme = "light" | "dark";
const prefersDark = window.matchMedia?.("(prefers-color-scheme: dark)").matches;
let theme: Theme = (storage?.getItem("emberline.theme") as Theme | null) ?? (prefersDark ? "dark" : "light");

const main = h("main", { id: "app", "data-mode": "share" });
const status = h("span", { class: "status", role: "status", "aria-live": "polite" });
const unitButton = h("button", { type: "button", class: "unit", "aria-label": "Temperature unit" });
const themeButton = h("button", { type: "button", class: "theme", "aria-label": "Light or dark theme" });
const note = h("span", { class: "share-note", "data-testid": "share-note" }, "Shared cook — read only");

type State = "loading" | "live" | "ended" | "unreachable";
let state: State = "loading";
let store: LiveStore | undefined;
let view: DeviceView | undefined;
let cook: Cook | undefined;
const cookLine = h("section", { class: "shared-cook", "aria-label": "The shared cook" });
const viewHost = h("div", { class: "shared-device" });

function showButtons(): void {
  unitButton.textContent = unit === "C" ? "°C" : "°F";
  themeButton.textContent = theme === "dark" ? "☀" : "☾";
}

function showStatus(): void {
  if (state !== "live" || !store) {
    status.textContent = "";
    delete status.dataset.state;
    return;
  }
  const s = store.status;
  status.textContent = { connecting: "Connecting…", live: "Live", reconnecting: "Connection lost — reconnecting…", stopped: "Stopped" }[s];
  status.dataset.state = s;
  status.title = store.statusDetail;
}

function showCook(): void {
  if (!cook) return;
  const started = Number(cook.startedMs);
  cookLine.replaceChildren(
    h("h2", { class: "cook-what" }, cook.what || "Cook"),
    h(
      "p",
      { class: "facts" },
      `Started ${new Date(started).toLocaleString()}`,
      cook.endedMs === undefined ? " · in progress" : ` · ended ${new Date(Number(cook.endedMs)).toLocaleString()}`,
    ),
  );
}

function stop(): void {
  view?.destroy();
  view = undefined;
  const old = store;
  store = undefined;
  old?.clear();
  void old?.stop();
}

/** The link no longer works: nothing of the cook stays on the page. */
function ended(): void {
  if (state === "ended") return;
  state = "ended";
  stop();
  cook = undefined;
  showStatus();
  main.replaceChildren(
    h(
      "section",
      { class: "share-ended", role: "alert", "data-testid": "share-ended" },
      h("h2", {}, "This share link has ended"),
      h("p", {}, "Whoever shared this cook stopped sharing it, or the link expired. Ask them for a new link."),
    ),
  );
}

async function open(): Promise<void> {
  if (!shareToken) {
    ended(); // no token in the address: nothing to show
    return;
  }
  let cookId: string;
  let found: Cook | undefined;
  try {
    const who = await auth.whoAmI({});
    cookId = who.scope === "share" ? who.cookId : "";
    // A share link sees its cook and no other.
    found = cookId ? (await cooks.listCooks({})).cooks.find((c) => c.cookId === cookId) : undefined;
  } catch (e) {
    if (linkEnded(e)) return ended();
    state = "unreachable";
    main.replaceChildren(h("p", { class: "empty", role: "alert" }, refusal(e), " — trying again shortly."));
    setTimeout(() => void open(), 5_000);
    return;
  }
  if (state === "ended") return;
  if (!found) return ended();
  cook = found;
  state = "live";
  showCook();
  main.replaceChildren(cookLine, viewHost);
  store = new LiveStore(found.deviceId);
  store.on(showStatus);
  view = new DeviceView(viewHost, store, found.deviceId, unit, { mode: "share" });
  showStatus();
  store.start();
  // The cook may end while the page is open: its line says so.
  setInterval(() => {
    if (state !== "live" || cook?.endedMs !== undefined) return;
    void cooks
      .listCooks({ deviceId: found.deviceId })
      .then((r) => {
        const now = r.cooks.find((c) => c.cookId === cookId);
        if (now && state === "live") {
          cook = now;
          showCook();
        }
      })
      .catch(() => {}); // the live feed says when the gateway is away; a refusal ends the page
  }, 30_000);
}

/** Whether this page was opened on a share link: then it is the share page, and the app
 * (its sign-in guard, its routes) does not run. */
export const sharePage = shareToken !== undefined;

/** Shows the share page in place of the app. */
export function startSharePage(): void {
  // The address holds the link's secret: no request of this page names it to anyone else.
  document.head.append(h("meta", { name: "referrer", content: "no-referrer" }));
  document.documentElement.dataset.theme = theme;
  document.body.replaceChildren(
    h("header", { class: "top" }, h("div", { class: "brand-box" }, h("span", { class: "brand" }, "Emberline"), note), status, unitButton, themeButton),
    main,
  );
  shareEvents.addEventListener("share-ended", ended);

  unitButton.addEventListener("click", () => {
    unit = unit === "C" ? "F" : "C";
    saveUnit(storage, unit);
    view?.setUnit(unit);
    showButtons();
  });
  themeButton.addEventListener("click", () => {
    theme = theme === "dark" ? "light" : "dark";
    storage?.setItem("emberline.theme", theme);
    document.documentElement.dataset.theme = theme;
    showButtons();
    view?.setUnit(unit); // redraw the chart in the theme's colours
  });

  // Ages ("12 s ago") move even when no update arrives.
  setInterval(() => view?.renderTiles(), 1_000);

  // Test hook: what the chart holds, the feed's state, and the page's.
  (window as unknown as { __emberline: unknown }).__emberline = {
    chart: () => view?.snapshot() ?? {},
    status: () => store?.status,
    insight: () => view?.insightFeedState(),
    share: () => ({ state, cookId: cook?.cookId, deviceId: cook?.deviceId }),
  };

  showButtons();
  void open();
}
