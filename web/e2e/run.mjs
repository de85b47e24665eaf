// End-to-end test of the web UI in headless Chromium against a real `emberline up`.
//
//   node e2e/run.mjs --binary ../target/debug/emberline [--thermoworks PATH]
//
// Checks: the first owner account is created from the one-time setup link `emberline up`
// logs; the session lives in HttpOnly cookies; the overview lists the simulated device, and
// a device renamed through the API shows there at once, pushed by the devices feed (the page
// never polls ListDevices); the device chart gains points live; after `emberline up` is killed (SIGKILL) and restarted,
// the page says so, reconnects (still signed in), and its series has neither a gap nor a
// duplicate; signing out leaves nothing behind (Back and reload show the sign-in page); a
// wrong password is refused in the server's words; signing in again returns to the page
// that asked; a share link opened in a fresh browser shows the live cook and no control
// (share.mjs); on the Settings page an owner adds and removes an alert rule, sets up a
// webhook channel whose test notification arrives, signed, and adds a ThermoWorks account
// against the local stand-in whose Node then streams onto the dashboard (settings.mjs);
// "Sign in with …" signs in through a real OpenID provider (oidc.mjs). Saves screenshots
// at 390×844 and 1440×900 in e2e/artifacts/ and prints the page's transferred size and
// time to first chart.

import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { encodeStrings, grpcWeb } from "./share.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const binary = args[args.indexOf("--binary") + 1];
if (!binary || args.indexOf("--binary") < 0) throw new Error("usage: run.mjs --binary PATH [--thermoworks PATH]");
// The ThermoWorks Cloud stand-in (emberline-ingest's `thermoworks-cloud` example), for the
// accounts check; without it that check is skipped, and says so.
const thermoworks = args.indexOf("--thermoworks") >= 0 ? args[args.indexOf("--thermoworks") + 1] : undefined;
const chromiumPath = process.env.EMBERLINE_CHROMIUM ?? "/usr/bin/chromium";
const artifacts = join(here, "artifacts");
mkdirSync(artifacts, { recursive: true });
const PATIENCE = 60_000;
const OWNER = { user: "owner", password: "grill-master-9" };

const freePort = () =>
  new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });

const dataDir = mkdtempSync(join(tmpdir(), "emberline-e2e-"));
const [grpcPort, webPort, registryPort] = [await freePort(), await freePort(), await freePort()];
const url = `http://127.0.0.1:${webPort}/`;
// The OpenID provider for "Sign in with …" (emberline/tests/oidc, installed by the test
// command); its web client returns to this page's callback.
const { startProvider } = await import("./oidc.mjs");
const provider = await startProvider({ port: await freePort(), webPort, dataDir });

/** The one-time setup link in `emberline up`'s log, if this line has it. */
function setupCode(line) {
  // eslint-disable-next-line no-control-regex
  const plain = line.replace(/\x1b\[[0-9;]*m/g, "");
  const m = /create the first owner account at (\S*?)#\/setup\/([0-9a-fA-F]{16})\b/.exec(plain);
  return m ? { origin: m[1], code: m[2] } : undefined;
}

/** Starts `emberline up`; `ready` resolves once the web UI listens, `setup` with the
 * one-time setup link once it is logged (never, when an account exists). */
function startUp() {
  const child = spawn(
    binary,
    ["--data-dir", dataDir, "up", "--grpc-addr", `127.0.0.1:${grpcPort}`, "--web-addr", `127.0.0.1:${webPort}`, "--registry-addr", `127.0.0.1:${registryPort}`],
    { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, ...provider.env, RUST_LOG: "warn,emberline_gateway=info" } },
  );
  let foundSetup;
  const setup = new Promise((resolve) => (foundSetup = resolve));
  const ready = new Promise((resolve, reject) => {
    let buffer = "";
    child.stderr.on("data", (chunk) => {
      buffer += chunk;
      process.stderr.write(`[emberline up] ${chunk}`);
      for (const line of buffer.split("\n")) {
        const found = setupCode(line);
        if (found) foundSetup(found);
      }
      if (buffer.includes("web UI listening")) resolve();
    });
    child.on("exit", (code) => reject(new Error(`emberline up exited (${code}) before listening`)));
  });
  return { child, ready, setup };
}

/** Resolves with `promise`, or fails saying `what` after `ms`. */
function within(promise, ms, what) {
  let timer;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`FAILED: ${what} within ${ms / 1000} s`)), ms))),
  ]);
}

function check(condition, message) {
  if (!condition) throw new Error(`FAILED: ${message}`);
  console.log(`PASS ${message}`);
}

let up = startUp();
let browser;
try {
  await up.ready;
  browser = await chromium.launch({
    executablePath: chromiumPath,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const context = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2 });
  const page = await context.newPage();
  page.setDefaultTimeout(PATIENCE);
  page.on("pageerror", (e) => console.error(`[page error] ${e.message}`));

  // The first owner: from the one-time link in the log.
  const link = await within(up.setup, PATIENCE, "emberline up logs a setup link");
  check(link.origin === "" || link.origin === url || link.origin === url.slice(0, -1), `the setup link in the log opens this web UI (${link.origin}#/setup/…)`);
  await page.goto(`${url}#/setup/${link.code}`);
  const transferred = await page.evaluate(() =>
    [...performance.getEntriesByType("navigation"), ...performance.getEntriesByType("resource")]
      .filter((e) => !e.name.includes("emberline.v1."))
      .reduce((sum, e) => sum + e.transferSize, 0),
  );
  check(!(await page.locator("button.signout").isVisible()), "no Sign out control before signing in");
  await page.locator('input[name="user"]').fill(OWNER.user);
  await page.locator('input[name="password"]').fill(OWNER.password);
  await page.locator('input[name="confirm"]').fill(`${OWNER.password}x`);
  await page.locator(".auth-form button[type=submit]").click();
  const mismatch = await page.locator("#setup-confirm-error").innerText();
  check(/differ/.test(mismatch), `the setup form catches a mistyped second password itself ("${mismatch}")`);
  await page.locator('input[name="password"]').fill("short");
  await page.locator('input[name="confirm"]').fill("short");
  await page.locator(".auth-form button[type=submit]").click();
  await page.locator("#setup-password-error").filter({ hasText: /\S/ }).waitFor();
  const tooShort = await page.locator("#setup-password-error").innerText();
  check(/8/.test(tooShort), `a too short password is refused next to its field in the server's words ("${tooShort}")`);
  await page.screenshot({ path: join(artifacts, "setup-390x844.png"), fullPage: true });
  await page.locator('input[name="password"]').fill(OWNER.password);
  await page.locator('input[name="confirm"]').fill(OWNER.password);
  await page.locator(".auth-form button[type=submit]").click();
  await page.locator('[data-device="sim-1"]').waitFor();
  check(new URL(page.url()).hash === "#/", `creating the owner opens the dashboard (${new URL(page.url()).hash})`);
  const who = await page.locator(".who").innerText();
  check(/owner/.test(who) && (await page.locator("button.signout").isVisible()), `the header says who is signed in ("${who}") and offers Sign out`);
  const visible = await page.evaluate(() => ({ cookie: document.cookie, stored: JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }) }));
  check(!visible.cookie.includes("emberline_") && !/token|eyJ/i.test(visible.stored), `the page's scripts see no session cookie or token (document.cookie "${visible.cookie}")`);

  // Overview: the simulated device with live numbers.
  const listed = [];
  const onList = (r) => r.url().includes("/emberline.v1.DeviceService/ListDevices") && listed.push(r.url());
  page.on("request", onList);
  const t0 = Date.now();
  await page.goto(url);
  await page.locator('[data-device="sim-1"] [data-probe="pit"] .temp').filter({ hasText: "°" }).waitFor();
  const overviewMs = Date.now() - t0;
  check(await page.locator('[data-device="sim-1"] h2').innerText().then((t) => t.includes("Simulated grill 1")), "the overview lists the simulated device by its name");
  check((await page.locator('[data-device="sim-1"] .probe').count()) === 4, "the overview shows its four probes");
  const ageText = await page.locator('[data-device="sim-1"] [data-probe="pit"] .age').innerText();
  check(/just now|s ago/.test(ageText), `each reading says how old it is ("${ageText}")`);
  await page.screenshot({ path: join(artifacts, "overview-390x844.png"), fullPage: true });

  // A device renamed meanwhile: the open overview shows the new name at once (the devices
  // feed pushes it), then the source's name again once the name is cleared.
  await page.waitForFunction(() => window.__emberline.devicesFeed() === "live");
  const rename = (name) => grpcWeb(page, "SettingsService/RenameDevice", encodeStrings(name ? { 1: "sim-1", 2: name } : { 1: "sim-1" }));
  const t2 = Date.now();
  const renamed = await rename("Renamed grill 1");
  check(renamed.status === "0", `the owner renames sim-1 through the API (status ${renamed.status} ${renamed.said})`);
  await page.locator('[data-device="sim-1"] h2', { hasText: "Renamed grill 1" }).waitFor({ timeout: 5_000 });
  const renameMs = Date.now() - t2;
  await rename("");
  await page.locator('[data-device="sim-1"] h2', { hasText: "Simulated grill 1" }).waitFor({ timeout: 5_000 });
  page.off("request", onList);
  check(
    listed.length === 0 && (await page.evaluate(() => window.__emberline.devicesFeed())) === "live",
    `a device renamed through the API shows on the open overview in ${renameMs} ms, pushed by the devices feed (${listed.length} ListDevices calls: nothing polls)`,
  );

  // Device page: the chart gains points live.
  const t1 = Date.now();
  await page.locator('[data-device="sim-1"] h2 a').click();
  await page.waitForFunction(() => (window.__emberline.chart().pit ?? []).length >= 2);
  await page.locator(".chart canvas").waitFor();
  const firstChartMs = Date.now() - t1;
  const before = await page.evaluate(() => window.__emberline.chart().pit.length);
  await page.waitForFunction((n) => window.__emberline.chart().pit.length >= n + 3, before);
  check(true, `the chart gains points live (${before} → ≥${before + 3})`);
  // The simulated cook aims each meat probe at 93 °C: the page shows their predictions.
  await page.waitForFunction(() => document.querySelector('.predictions li[data-probe="meat-1"]')?.textContent?.startsWith("Meat 1"));
  const prediction = await page.locator('.predictions li[data-probe="meat-1"]').innerText();
  check(/^Meat 1 → 93°/.test(prediction) && /estimating…|done ≈/.test(prediction), `the meat probe's prediction is shown ("${prediction}")`);
  // Predictions and alerts arrive by subscription: both feeds are live and updates are
  // pushed (no polling timer is left to redraw them).
  await page.waitForFunction(() => {
    const s = window.__emberline.insight();
    return s && s.feeds.every((f) => f === "live") && s.pushed >= 2;
  });
  check(true, "predictions and alerts are pushed to the device page by subscription");
  await page.screenshot({ path: join(artifacts, "device-390x844.png"), fullPage: true });

  // °C/°F toggle is remembered per browser; a reopened page charts the stored history.
  await page.locator("button.unit").click();
  const charted = await page.evaluate(() => window.__emberline.chart().pit);
  await page.reload();
  check((await page.locator("button.unit").innerText()) === "°F", "the °F choice survives a reload");
  // Only stored history can bring back points older than the reload.
  await page.waitForFunction((first) => (window.__emberline.chart().pit ?? [])[0] <= first, charted[0]);
  check(true, `the reopened chart starts from stored history (the first of ${charted.length} earlier points is back)`);
  await page.locator("button.unit").click();

  // The gateway dies: the page says so; it comes back: the page reconnects and fills the gap.
  await page.waitForFunction(() => window.__emberline.chart().pit.length >= 10);
  up.child.kill("SIGKILL");
  await page.locator('.status[data-state="reconnecting"]').waitFor();
  check(true, "the page says the connection is lost");
  const lastBefore = await page.evaluate(() => window.__emberline.chart().pit.at(-1));
  up = startUp();
  await up.ready;
  await page.locator('.status[data-state="live"]').waitFor();
  check(await page.locator("button.signout").isVisible(), "the page is still signed in after the server restarted");
  await page.waitForFunction((t) => window.__emberline.chart().pit.filter((x) => x > t).length >= 5, lastBefore);
  const times = await page.evaluate(() => window.__emberline.chart().pit);
  const sorted = times.every((t, i) => i === 0 || t > times[i - 1]);
  check(sorted, `no duplicate points (${times.length} pit points, strictly increasing)`);
  const stored = await page.evaluate(([from, to]) => window.__emberline.stored("pit", from, to), [times[0], times.at(-1) + 1]);
  const have = new Set(times);
  const missing = stored.filter((t) => !have.has(t));
  check(missing.length === 0 && stored.length >= 5, `no gap: all ${stored.length} stored pit readings in the charted span are on the chart${missing.length ? ` (missing ${missing.slice(0, 5)})` : ""}`);

  // Installable: the service worker controls the page; at 360 px nothing scrolls sideways.
  const sw = await page.evaluate(async () => (await navigator.serviceWorker.ready).active?.scriptURL ?? "");
  check(sw.endsWith("/sw.js"), "the service worker is active (installable app shell)");
  await page.setViewportSize({ width: 360, height: 740 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 0, `no sideways scrolling at 360 px (${overflow} px overflow)`);

  // The planner: serve tomorrow at 18:00, a 4 kg pork shoulder, wrapped.
  await page.goto(`${url}#/plan`);
  await page.locator('input[name="weight"]').fill("4");
  await page.locator('input[name="meat"]').fill("pork shoulder");
  await page.locator('input[name="wrap"]').check();
  await page.locator(".plan-form button[type=submit]").click();
  await page.locator('.plan-steps li[data-step="serve"]').waitFor();
  const steps = await page.locator(".plan-steps li").evaluateAll((lis) => lis.map((li) => li.dataset.step));
  check(steps.join(",") === "light,on,stall,wrap,pull,rest,serve", `the plan lists light, meat on, stall, wrap, pull, rest and serve in order (${steps})`);
  const serveRow = await page.locator('.plan-steps li[data-step="serve"] .when').innerText();
  const pullRow = await page.locator('.plan-steps li[data-step="pull"]').innerText();
  check(serveRow === "18:00" && /by 1[0-7]:\d\d at the latest/.test(pullRow), `the plan pulls the meat before an 18:00 serving with time to rest ("${pullRow.replace(/\s+/g, " ")}")`);
  await page.screenshot({ path: join(artifacts, "plan-390x844.png"), fullPage: true });
  // A pit no hotter than the meat's target cannot finish it: the gateway says so.
  await page.locator('input[name="pit"]').fill("95");
  await page.locator(".plan-form button[type=submit]").click();
  const refusal = await page.locator(".plan-result .error").innerText();
  check(refusal.includes("at least 10 °C hotter"), `an impossible plan says why ("${refusal}")`);

  // Desktop layout.
  await page.setViewportSize({ width: 1440, height: 900 });
  await page.screenshot({ path: join(artifacts, "device-1440x900.png"), fullPage: true });
  await page.goto(url);
  await page.locator('[data-device="sim-1"] [data-probe="pit"] .temp').filter({ hasText: "°" }).waitFor();
  await page.screenshot({ path: join(artifacts, "overview-1440x900.png"), fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });

  // Signing out leaves nothing of the session: not on Back, not on reload.
  const signInForm = page.locator('.auth-form input[name="password"][autocomplete="current-password"]');
  const noDevices = async () => {
    const text = await page.locator("body").innerText();
    return (await page.locator("[data-device]").count()) === 0 && !text.includes("Simulated grill") && !text.includes("sim-1");
  };
  await page.locator('[data-device="sim-1"] h2 a').click();
  await page.locator(".device-head h2").filter({ hasText: "Simulated grill 1" }).waitFor();
  await page.locator("button.signout").click();
  await signInForm.waitFor();
  check(new URL(page.url()).hash === "#/signin" && (await noDevices()) && !(await page.locator("button.signout").isVisible()), "signing out shows the sign-in page and nothing of the session");
  await page.goBack();
  await page.waitForTimeout(1_500); // anything the previous page would load has had time to
  check(new URL(page.url()).hash === "#/signin" && (await signInForm.isVisible()) && (await noDevices()), `after signing out, Back still shows the sign-in page and no device (${new URL(page.url()).hash})`);
  await page.reload();
  await signInForm.waitFor();
  await page.waitForTimeout(1_000);
  check(await noDevices(), "after signing out, a reload shows the sign-in page: the server ended the session");
  await page.screenshot({ path: join(artifacts, "signin-390x844.png"), fullPage: true });

  // A wrong password: refused, in the server's words, next to the form.
  await page.locator('input[name="user"]').fill(OWNER.user);
  await page.locator('input[name="password"]').fill("not-the-password");
  await page.locator(".auth-form button[type=submit]").click();
  await page.locator("#signin-error").filter({ hasText: /\S/ }).waitFor();
  const wrong = await page.locator("#signin-error").innerText();
  check(wrong.includes("wrong user name or password") && (await noDevices()), `a wrong password is refused with the server's message ("${wrong}")`);

  // Signing in again returns to the page that asked for it, and shows the devices.
  await page.goto(`${url}#/device/sim-1`);
  await signInForm.waitFor();
  check(new URL(page.url()).hash === "#/signin", "a device page asks to sign in first");
  await page.locator('input[name="user"]').fill(OWNER.user);
  await page.locator('input[name="password"]').fill(OWNER.password);
  await page.locator(".auth-form button[type=submit]").click();
  await page.locator(".device-head h2").filter({ hasText: "Simulated grill 1" }).waitFor();
  check(new URL(page.url()).hash === "#/device/sim-1", "signing in again returns to the device page that asked");
  await page.locator(".back a").click();
  await page.locator('[data-device="sim-1"] [data-probe="pit"] .temp').filter({ hasText: "°" }).waitFor();
  check(await page.locator('[data-device="sim-1"] h2').innerText().then((t) => t.includes("Simulated grill 1")), "signed in again, the overview shows its devices");
  const again = await page.evaluate(() => document.cookie);
  check(!again.includes("emberline_"), "the session cookies stay out of the page's reach after signing in again");

  // The access cookie runs out (after 15 min): the calls it refuses together renew it once
  // with the refresh cookie and go through, without asking to sign in again.
  const renewals = [];
  const refused = [];
  const onRequest = (r) => r.url().includes("/emberline.v1.AuthService/Refresh") && renewals.push(r.url());
  const onResponse = async (r) => {
    if (r.url().includes("/emberline.v1.") && (await r.headerValue("grpc-status")) === "16") refused.push(r.url());
  };
  page.on("request", onRequest);
  page.on("response", onResponse);
  await context.clearCookies({ name: "emberline_access" });
  await page.locator('[data-device="sim-1"] h2 a').click();
  await page.waitForFunction(() => (window.__emberline.chart().pit ?? []).length >= 2);
  await page.waitForFunction(() => window.__emberline.insight()?.feeds.every((f) => f === "live"));
  await page.waitForTimeout(500);
  page.off("request", onRequest);
  page.off("response", onResponse);
  check(
    renewals.length === 1 && new URL(page.url()).hash === "#/device/sim-1" && (await page.locator("button.signout").isVisible()),
    `an expired access cookie is renewed once for the ${refused.length} calls it refused together, and the page stays signed in (${renewals.length} renewal)`,
  );

  // Guessing is slowed down: repeated wrong passwords are refused with the time to wait.
  const guesser = await browser.newContext();
  const guess = await guesser.newPage();
  guess.setDefaultTimeout(PATIENCE);
  await guess.goto(`${url}#/signin`);
  let throttled = "";
  for (let i = 0; i < 12 && !throttled; i++) {
    await guess.locator('input[name="user"]').fill(OWNER.user);
    await guess.locator('input[name="password"]').fill(`guess-${i}`);
    await guess.locator(".auth-form button[type=submit]").click();
    await guess.locator(".auth-form button[type=submit]:not([disabled])").waitFor();
    const said = await guess.locator("#signin-error").innerText();
    if (/too many/.test(said)) throttled = said;
  }
  check(/too many failed sign-ins; try again in \d+ ?s/.test(throttled), `repeated wrong passwords are slowed down in the server's words ("${throttled}")`);
  await guesser.close();

  await (await import("./settings.mjs")).checkSettings({ url, page, check, patience: PATIENCE, artifacts, browser });
  if (thermoworks) {
    await (await import("./settings.mjs")).checkAccounts({ url, page, check, thermoworks, port: await freePort(), patience: PATIENCE, artifacts });
  } else {
    console.log("SKIP thermometer accounts: no --thermoworks stand-in given");
  }
  await (await import("./share.mjs")).checkShare({ browser, url, page, check, patience: PATIENCE, artifacts, binary, dataDir });
  await (await import("./oidc.mjs")).checkProviderSignIn({ browser, url, check, patience: PATIENCE });

  // Preferences follow the user: °F chosen here shows in a browser signed in afresh.
  await page.goto(`${url}#/`);
  const unitButton = page.locator("button.unit");
  if ((await unitButton.innerText()) !== "°F") await unitButton.click();
  await page.locator("button.unit", { hasText: "°F" }).waitFor();
  const other = await browser.newContext();
  const elsewhere = await other.newPage();
  elsewhere.setDefaultTimeout(PATIENCE);
  await elsewhere.goto(`${url}#/signin`);
  await elsewhere.locator('input[name="user"]').fill(OWNER.user);
  await elsewhere.locator('input[name="password"]').fill(OWNER.password);
  await elsewhere.locator(".auth-form button[type=submit]").click();
  await elsewhere.locator("button.unit", { hasText: "°F" }).waitFor();
  check(true, "°F chosen in one browser shows in another the same user signs in on (preferences kept on the server)");
  await other.close();
  await unitButton.click();
  await page.locator("button.unit", { hasText: "°C" }).waitFor();
  console.log(`MEASURED transferred ${(transferred / 1024).toFixed(1)} KiB for the first load; overview with live numbers ${overviewMs} ms; first chart ${firstChartMs} ms after opening the device`);
  console.log(`screenshots in ${artifacts}`);
} finally {
  await browser?.close();
  up.child.kill("SIGKILL");
  provider.stop();
  rmSync(dataDir, { recursive: true, force: true });
}
