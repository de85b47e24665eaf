// End-to-end test of the web UI in headless Chromium against a real `emberline up`.
//
//   node e2e/run.mjs --binary ../target/debug/emberline
//
// Checks: the overview lists the simulated device; the device chart gains points live;
// after `emberline up` is killed (SIGKILL) and restarted, the page says so, reconnects, and
// its series has neither a gap nor a duplicate. Saves screenshots at 390×844 and 1440×900
// in e2e/artifacts/ and prints the page's transferred size and time to first chart.

import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const binary = args[args.indexOf("--binary") + 1];
if (!binary || args.indexOf("--binary") < 0) throw new Error("usage: run.mjs --binary PATH");
const chromiumPath = process.env.EMBERLINE_CHROMIUM ?? "/usr/bin/chromium";
const artifacts = join(here, "artifacts");
mkdirSync(artifacts, { recursive: true });
const PATIENCE = 60_000;

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

/** Starts `emberline up`; resolves once the web UI listens. */
function startUp() {
  const child = spawn(
    binary,
    ["--data-dir", dataDir, "up", "--grpc-addr", `127.0.0.1:${grpcPort}`, "--web-addr", `127.0.0.1:${webPort}`, "--registry-addr", `127.0.0.1:${registryPort}`],
    { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, RUST_LOG: "warn,emberline_gateway=info" } },
  );
  const ready = new Promise((resolve, reject) => {
    let buffer = "";
    child.stderr.on("data", (chunk) => {
      buffer += chunk;
      process.stderr.write(`[emberline up] ${chunk}`);
      if (buffer.includes("web UI listening")) resolve();
    });
    child.on("exit", (code) => reject(new Error(`emberline up exited (${code}) before listening`)));
  });
  return { child, ready };
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

  // Overview: the simulated device with live numbers.
  const t0 = Date.now();
  await page.goto(url);
  await page.locator('[data-device="sim-1"] [data-probe="pit"] .temp').filter({ hasText: "°" }).waitFor();
  const overviewMs = Date.now() - t0;
  check(await page.locator('[data-device="sim-1"] h2').innerText().then((t) => t.includes("Simulated grill 1")), "the overview lists the simulated device by its name");
  check((await page.locator('[data-device="sim-1"] .probe').count()) === 4, "the overview shows its four probes");
  const ageText = await page.locator('[data-device="sim-1"] [data-probe="pit"] .age').innerText();
  check(/just now|s ago/.test(ageText), `each reading says how old it is ("${ageText}")`);
  const transferred = await page.evaluate(() =>
    [...performance.getEntriesByType("navigation"), ...performance.getEntriesByType("resource")]
      .filter((e) => !e.name.includes("emberline.v1."))
      .reduce((sum, e) => sum + e.transferSize, 0),
  );
  await page.screenshot({ path: join(artifacts, "overview-390x844.png"), fullPage: true });

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

  console.log(`MEASURED transferred ${(transferred / 1024).toFixed(1)} KiB for the first load; overview with live numbers ${overviewMs} ms; first chart ${firstChartMs} ms after opening the device`);
  console.log(`screenshots in ${artifacts}`);
} finally {
  await browser?.close();
  up.child.kill("SIGKILL");
  rmSync(dataDir, { recursive: true, force: true });
}
