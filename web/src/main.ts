// Emberline's web UI: routes and their guard, session, header controls, live store,
// service worker.

import "./style.css";
import { auth, sessionEvents, sessionStarted, settings, signOut } from "./api";
import { h } from "./dom";
import type { WhoAmIResponse } from "./gen/emberline/v1/emberline_pb";
import { decide, parseRoute, returnRoute, SIGN_IN, type SessionState } from "./routes";
import { isUnauthenticated } from "./session";
import { LiveStore } from "./store";
import { loadUnit, saveUnit, type Unit } from "./units";
import { DeviceView } from "./views/device";
import { renderOverview } from "./views/overview";
import { renderPlan } from "./views/plan";
import { renderSettings } from "./views/settings";
import { renderSetup } from "./views/setup";
import { sharePage, startSharePage } from "./sharepage";
import { refusal, renderSignIn } from "./views/signin";

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
const planLink = h("a", { href: "#/plan", class: "nav" }, "Plan");
const settingsLink = h("a", { href: "#/settings", class: "nav settings", "data-testid": "settings-link", title: "Settings" }, h("span", { class: "label" }, "Settings"));
// A gear: the link's face on narrow screens, where the word does not fit beside the rest.
settingsLink.insertAdjacentHTML(
  "afterbegin",
  '<svg class="icon" viewBox="0 0 24 24" width="22" height="22" aria-hidden="true" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round"><circle cx="12" cy="12" r="3"/><path d="M19.4 15a1.7 1.7 0 0 0 .3 1.8l.1.1a2 2 0 1 1-2.8 2.8l-.1-.1a1.7 1.7 0 0 0-1.8-.3 1.7 1.7 0 0 0-1 1.5V21a2 2 0 1 1-4 0v-.1a1.7 1.7 0 0 0-1.1-1.5 1.7 1.7 0 0 0-1.8.3l-.1.1a2 2 0 1 1-2.8-2.8l.1-.1a1.7 1.7 0 0 0 .3-1.8 1.7 1.7 0 0 0-1.5-1H3a2 2 0 1 1 0-4h.1a1.7 1.7 0 0 0 1.5-1.1 1.7 1.7 0 0 0-.3-1.8l-.1-.1a2 2 0 1 1 2.8-2.8l.1.1a1.7 1.7 0 0 0 1.8.3H9a1.7 1.7 0 0 0 1-1.5V3a2 2 0 1 1 4 0v.1a1.7 1.7 0 0 0 1 1.5 1.7 1.7 0 0 0 1.8-.3l.1-.1a2 2 0 1 1 2.8 2.8l-.1.1a1.7 1.7 0 0 0-.3 1.8V9a1.7 1.7 0 0 0 1.5 1H21a2 2 0 1 1 0 4h-.1a1.7 1.7 0 0 0-1.5 1z"/></svg>',
);
const who = h("span", { class: "who", "data-testid": "who" });
const signOutButton = h("button", { type: "button", class: "signout", title: "Sign out" }, h("span", { class: "label" }, "Sign out"));
// A door with an arrow out: the button's face on narrow screens, where the words do not fit.
signOutButton.insertAdjacentHTML(
  "afterbegin",
  '<svg class="icon" viewBox="0 0 24 24" width="20" height="20" aria-hidden="true" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round"><path d="M14 4h4a2 2 0 0 1 2 2v12a2 2 0 0 1-2 2h-4"/><path d="M9 8l-4 4 4 4"/><path d="M5 12h10"/></svg>',
);
document.body.replaceChildren(
  h(
    "header",
    { class: "top" },
    h("div", { class: "brand-box" }, h("a", { href: "#/", class: "brand" }, "Emberline"), who),
    planLink,
    settingsLink,
    status,
    signOutButton,
    unitButton,
    themeButton,
  ),
  main,
);

// The session: who is signed in (asked once per page load and on signing in). Credentials
// are HttpOnly cookies: the page never holds them.
let sessionState: SessionState = "unknown";
let caller: WhoAmIResponse | undefined;
/** The page to return to after signing in. */
let remembered: string | undefined;
/** Said on the sign-in page once (e.g. that signing out did not reach the server). */
let notice = "";

/** Applies the signed-in user's preferences, kept on the server so every browser and phone
 * they use shows the same; this browser's own choice stays when they have none. */
async function loadPreferences(): Promise<void> {
  try {
    const p = await settings.getPreferences({});
    let changed = false;
    if ((p.unit === "C" || p.unit === "F") && p.unit !== unit) {
      unit = p.unit;
      saveUnit(storage, unit);
      changed = true;
    }
    if ((p.theme === "light" || p.theme === "dark") && p.theme !== theme) {
      theme = p.theme;
      storage?.setItem("emberline.theme", theme);
      document.documentElement.dataset.theme = theme;
      changed = true;
    }
    if (changed) {
      view?.setUnit(unit);
      render();
    }
  } catch {
    // Not kept by this server, or not signed in: this browser's choice stands.
  }
}

/** Keeps this choice as the signed-in user's (a failure leaves it this browser's). */
function savePreferences(): void {
  if (sessionState !== "signed-in") return;
  settings.setPreferences({ unit, theme }).catch(() => undefined);
}

function showSession(): void {
  const signedIn = sessionState === "signed-in";
  who.textContent = signedIn && caller ? `${caller.name}${caller.role ? ` · ${caller.role}` : ""}` : "";
  who.hidden = !signedIn;
  signOutButton.hidden = !signedIn;
  planLink.hidden = !signedIn && sessionState !== "unverified";
  // Settings are an owner's (the server refuses anyone else all the same).
  settingsLink.hidden = !(signedIn && caller?.role === "owner") && sessionState !== "unverified";
}
showSession();

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
  if (planning || !store) {
    // The plan page keeps no live feed: nothing to report.
    status.textContent = "";
    delete status.dataset.state;
    return;
  }
  showStatus();
  if (store && !view) renderOverview(main, store, unit);
}

let planning = false;

/** Stops the live feed and forgets what it held. */
function leaveApp(): void {
  view?.destroy();
  view = undefined;
  const old = store;
  store = undefined;
  old?.clear();
  void old?.stop();
}

/** Bumped by each routing: a routing that was overtaken while it waited gives up. */
let routing = 0;

async function route(): Promise<void> {
  const mine = ++routing;
  const where = parseRoute(window.location.hash);
  const decision = decide(where, sessionState, remembered);
  if (decision.kind === "check") {
    await checkSession();
    if (mine === routing) await route();
    return;
  }
  if (decision.kind === "redirect") {
    if (decision.remember !== undefined) remembered = decision.remember;
    leaveApp();
    main.replaceChildren();
    window.location.replace(decision.to);
    return;
  }
  if (where.kind !== "app") {
    leaveApp();
    planning = false;
    render();
    if (where.kind === "signin") {
      renderSignIn(main, signedIn, notice);
      notice = "";
    } else {
      renderSetup(main, where.code, signedIn);
    }
    return;
  }
  showApp();
}

/** Asks the server who this is. A refusal has already renewed (or failed to) and said so. */
async function checkSession(): Promise<void> {
  try {
    caller = await auth.whoAmI({});
    sessionState = "signed-in";
    void loadPreferences();
  } catch (e) {
    if (isUnauthenticated(e)) {
      sessionState = "signed-out";
    } else {
      // The server is not answering: show the page (it holds nothing until the server
      // gives it data, which it gives no one unsigned) and ask again shortly.
      sessionState = "unverified";
      setTimeout(() => {
        if (sessionState === "unverified") void recheck();
      }, 5_000);
    }
  }
  showSession();
}

async function recheck(): Promise<void> {
  await checkSession();
  if (sessionState === "signed-out") void route();
}

/** Signed in (by the sign-in or the setup page): back to where the page was going. */
function signedIn(whoami: WhoAmIResponse | undefined): void {
  const to = returnRoute(remembered);
  remembered = undefined;
  sessionState = "signed-in";
  caller = whoami;
  sessionStarted();
  showSession();
  void loadPreferences();
  if (!whoami) void checkSession();
  window.location.replace(to);
}

/** The session is over: nothing of it stays on the page. */
function signedOut(): void {
  if (sessionState === "signed-out") return;
  sessionState = "signed-out";
  caller = undefined;
  leaveApp();
  main.replaceChildren();
  showSession();
  void route();
}

sessionEvents.addEventListener("signed-out", signedOut);

signOutButton.addEventListener("click", () => {
  // Forget first: from here on nothing of the session shows, and no call of the page's
  // races the sign-out.
  remembered = undefined;
  sessionState = "signed-out";
  caller = undefined;
  leaveApp();
  main.replaceChildren();
  showSession();
  routing++; // whatever routing was under way is overtaken
  void signOut()
    .catch((e: unknown) => {
      notice = `Emberline did not confirm the sign-out (${refusal(e)}): the session may still be open on the server.`;
    })
    .finally(() => {
      // Replace, so Back does not come back here; the guard turns away any other page.
      if (window.location.hash === SIGN_IN) void route();
      else window.location.replace(SIGN_IN);
    });
});

function showApp(): void {
  planning = window.location.hash === "#/plan" || window.location.hash === "#/settings";
  leaveApp();
  if (window.location.hash === "#/settings") {
    renderSettings(main, caller?.name);
    render();
    return;
  }
  if (planning) {
    renderPlan(main, unit);
    render();
    return;
  }
  const match = /^#\/device\/(.+)$/.exec(window.location.hash);
  const deviceId = match ? decodeURIComponent(match[1]!) : "";
  store = new LiveStore(deviceId);
  store.on(render);
  if (deviceId) view = new DeviceView(main, store, deviceId, unit);
  render();
  store.start();
}

unitButton.addEventListener("click", () => {
  unit = unit === "C" ? "F" : "C";
  saveUnit(storage, unit);
  savePreferences();
  view?.setUnit(unit);
  if (window.location.hash === "#/plan") renderPlan(main, unit);
  render();
});
themeButton.addEventListener("click", () => {
  theme = theme === "dark" ? "light" : "dark";
  storage?.setItem("emberline.theme", theme);
  savePreferences();
  document.documentElement.dataset.theme = theme;
  render();
  view?.setUnit(unit); // redraw the chart in the theme's colours
});

if (!sharePage) window.addEventListener("hashchange", () => void route());
// Ages ("12 s ago") move even when no update arrives.
ticker = setInterval(() => {
  if (view) view.renderTiles();
  else render();
}, 1_000);
void ticker;

// Test hook: what the chart holds and the feeds' state.
(window as unknown as { __emberline: unknown }).__emberline = {
  chart: () => view?.snapshot() ?? {},
  stored: (probe: string, from: number, to: number) => view?.storedTimes(probe, from, to) ?? Promise.resolve([]),
  status: () => store?.status,
  devicesFeed: () => store?.devicesStatus,
  insight: () => view?.insightFeedState(),
  session: () => ({ state: sessionState, name: caller?.name, role: caller?.role }),
};

// A share link's page (`/s/<token>`) is the read-only cook page instead: no session, no routes.
if (sharePage) startSharePage();
else void route();

if ("serviceWorker" in navigator && window.location.protocol === "http:" && window.location.hostname !== "") {
  void navigator.serviceWorker.register("/sw.js").catch(() => {});
}
