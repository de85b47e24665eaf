// The Settings page in headless Chromium: an owner adds a webhook channel pointing at a
// local receiver, a bad URL is refused next to the URL field in the server's words, the
// saved channel is listed without its secret, and "Send a test" reaches the receiver,
// signed with the secret typed in; an alert rule without its threshold is refused next to
// that field, a good one is listed in words and removed, and one routed to the channel
// escalates to a second channel when nobody acknowledges it; an API token is made, shown
// once, works from a script and is refused once revoked; a probe renamed there shows so on
// the dashboard. `checkAccounts` adds a ThermoWorks account against the local stand-in.

import { createHmac } from "node:crypto";
import { createServer } from "node:http";

/** A local webhook receiver: every POST's headers and body. */
function receiver() {
  const seen = [];
  const server = createServer((req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      seen.push({ headers: req.headers, body });
      res.end("ok");
    });
  });
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () => resolve({ port: server.address().port, seen, close: () => server.close() })),
  );
}

/**
 * @param {object} t
 * @param {string} t.url the web UI's address, ending in "/"
 * @param {import("playwright-core").Page} t.page a page signed in as an owner
 * @param {(ok: boolean, message: string) => void} t.check
 * @param {number} [t.patience] ms to wait for anything
 * @param {string} [t.artifacts] where to save a screenshot
 */
export async function checkSettings({ url, page, check, patience = 60_000, artifacts, browser }) {
  const hook = await receiver();
  try {
    await page.goto(`${url}#/`);
    await page.locator('[data-testid="settings-link"]').click();
    const form = page.locator('[data-testid="channel-form"]');
    await form.waitFor();
    check(await page.locator('[data-testid="channels"] li.empty').isVisible(), "the Settings page says no channel is set up yet");

    await form.locator('input[name="name"]').fill("phone");
    await form.locator('input[name="url"]').fill("ftp://example.org/hook");
    await form.locator("button[type=submit]").click();
    const urlError = form.locator('[data-error="url"]');
    await urlError.filter({ hasText: /not http/ }).waitFor({ timeout: patience });
    check(true, `a bad URL is refused next to the URL field ("${await urlError.innerText()}")`);

    const secret = "typed-in-signing-secret";
    const path = "/hook/this-path-is-a-credential";
    await form.locator('input[name="url"]').fill(`http://127.0.0.1:${hook.port}${path}`);
    await form.locator('input[name="secret"]').fill(secret);
    await form.locator("button[type=submit]").click();
    const row = page.locator('li.channel[data-channel="phone"]');
    await row.waitFor({ timeout: patience });
    const shown = await page.locator('[data-testid="channels"]').innerText();
    check(
      shown.includes(`http://127.0.0.1:${hook.port}/…`) && shown.includes("secret set") && !shown.includes("credential") && !shown.includes(secret),
      "the saved channel is listed by where it goes, with its secret set and not shown",
    );
    check((await form.locator('[data-error="url"]').innerText()) === "", "the URL's error is gone once it is right");

    await page.locator('[data-testid="test-phone"]').click();
    await page.locator("p.facts", { hasText: "Test notification sent to phone" }).waitFor({ timeout: patience });
    check(hook.seen.length === 1, "the test notification reached the local receiver");
    const { headers, body } = hook.seen[0];
    const expected = `sha256=${createHmac("sha256", secret).update(`${headers["x-emberline-timestamp"]}.${body}`).digest("hex")}`;
    check(headers["x-emberline-signature"] === expected, "signed with the secret typed in the form");
    if (artifacts) await page.screenshot({ path: `${artifacts}/settings-390.png`, fullPage: true });

    await checkEscalation({ page, check, patience, form, url, phone: hook });

    await page.locator('[data-testid="remove-phone"]').click();
    await page.locator('li.channel[data-channel="phone"]').waitFor({ state: "detached", timeout: patience });
    check(true, "a removed channel leaves the list");

    // An alert rule: a missing threshold is refused next to the threshold field, a good rule
    // is listed in words, and Remove takes it away.
    const rules = page.locator('[data-testid="rule-form"]');
    await rules.waitFor({ timeout: patience });
    await rules.locator('select[name="device_id"]').selectOption("sim-1");
    await rules.locator('select[name="probe_id"]').selectOption("pit");
    await rules.locator('select[name="kind"]').selectOption("above");
    await rules.locator('select[name="notify"]').selectOption("");
    await rules.locator('select[name="escalate_to"]').selectOption("");
    await rules.locator('input[name="repeat_every_s"]').fill("");
    await rules.locator("button[type=submit]").click();
    const thresholdError = rules.locator('[data-error="threshold"]');
    await thresholdError.filter({ hasText: /needs a threshold/ }).waitFor({ timeout: patience });
    check(true, `a rule without its threshold is refused next to the threshold field ("${await thresholdError.innerText()}")`);
    await rules.locator('input[name="threshold"]').fill("500");
    await rules.locator('input[name="for_s"]').fill("1");
    await rules.locator('input[name="label"]').fill("Pit on fire");
    await rules.locator("button[type=submit]").click();
    const ruleRow = page.locator('li.rule[data-rule-device="sim-1"]', { hasText: "Pit on fire" });
    await ruleRow.waitFor({ timeout: patience });
    const ruleText = await ruleRow.innerText();
    // The threshold is typed in the page's unit, which the preferences check may have made
    // °F by the time the form was read: 500 °C, 500 °F, or 500 °C shown as 932 °F.
    check(/goes above (500°C|500°F|932°F) for 1 min/.test(ruleText), `the rule is listed in words, in the page's unit ("${ruleText.replace(/\s+/g, " ")}")`);
    await ruleRow.locator("button.remove").click();
    await ruleRow.waitFor({ state: "detached", timeout: patience });
    check(true, "a removed rule leaves the list");

    // An API token: made, shown once, listed by name; revoked, it leaves the list.
    const tokenForm = page.locator('[data-testid="token-form"]');
    await tokenForm.locator("button[type=submit]").click();
    await tokenForm.locator('[data-error="name"]').filter({ hasText: /needs a name/ }).waitFor({ timeout: patience });
    check(true, "a token without a name is refused next to the name field");
    await tokenForm.locator('input[name="name"]').fill("scripts");
    await tokenForm.locator('select[name="scope"]').selectOption("read");
    await tokenForm.locator("button[type=submit]").click();
    const tokenValue = page.locator('[data-testid="token-value"]');
    await tokenValue.waitFor({ timeout: patience });
    const token = await tokenValue.innerText();
    const tokenRow = page.locator('li.token[data-token="scripts"]');
    await tokenRow.waitFor({ timeout: patience });
    check(token.length > 20 && !(await page.locator('[data-testid="tokens"]').innerText()).includes(token), "a new token is shown once, and listed by name without its value");
    // A script's call with the token, as grpc-web: a refusal comes as a trailers-only
    // answer with grpc-status in the headers; an answer has it in the body's trailer.
    const scriptCall = async () => {
      const r = await fetch(`${url}emberline.v1.DeviceService/ListDevices`, {
        method: "POST",
        headers: { "content-type": "application/grpc-web+proto", "x-grpc-web": "1", authorization: `Bearer ${token}` },
        body: new Uint8Array([0, 0, 0, 0, 0]),
      });
      const body = new Uint8Array(await r.arrayBuffer());
      return r.headers.get("grpc-status") ?? /grpc-status:\s*(\d+)/.exec(new TextDecoder().decode(body))?.[1] ?? "none";
    };
    const before = await scriptCall();
    check(before === "0", `the token works from a script (grpc-status ${before})`);
    await page.locator('[data-testid="revoke-token-scripts"]').click();
    await tokenRow.waitFor({ state: "detached", timeout: patience });
    const after = await scriptCall();
    check(after === "16", `a revoked token leaves the list and is refused (grpc-status ${after})`);

    // A user: a short password is refused next to its field; added, they can sign in with
    // their role; removed, they cannot.
    const userForm = page.locator('[data-testid="user-form"]');
    await userForm.locator('input[name="name"]').fill("sam");
    await userForm.locator('select[name="role"]').selectOption("cook");
    await userForm.locator('input[name="password"]').fill("short");
    await userForm.locator("button[type=submit]").click();
    await userForm.locator('[data-error="password"]').filter({ hasText: /at least/ }).waitFor({ timeout: patience });
    check(true, "a short password is refused next to the password field");
    await userForm.locator('input[name="password"]').fill("sams-first-password");
    await userForm.locator("button[type=submit]").click();
    const samRow = page.locator('li.user[data-user="sam"]');
    await samRow.waitFor({ timeout: patience });
    check((await samRow.innerText()).includes("cook"), "the added user is listed with their role");
    if (browser) {
      const signInAs = async () => {
        const context = await browser.newContext();
        const other = await context.newPage();
        other.setDefaultTimeout(patience);
        await other.goto(`${url}#/signin`);
        await other.locator('input[name="user"]').fill("sam");
        await other.locator('input[name="password"]').fill("sams-first-password");
        await other.locator(".auth-form button[type=submit]").click();
        return { context, other };
      };
      const { context, other } = await signInAs();
      await other.locator("button.signout").waitFor({ timeout: patience });
      const whoText = await other.locator(".who").innerText().catch(() => "");
      check(/sam/.test(whoText) && !(await other.locator('[data-testid="settings-link"]').isVisible()), `the new user signs in as a cook, with no Settings ("${whoText}")`);
      await context.close();
      await page.locator('[data-testid="remove-user-sam"]').click();
      await samRow.waitFor({ state: "detached", timeout: patience });
      const again = await signInAs();
      await again.other.locator("#signin-error").filter({ hasText: /\S/ }).waitFor({ timeout: patience });
      check(true, `a removed user can no longer sign in ("${await again.other.locator("#signin-error").innerText()}")`);
      await again.context.close();
    }

    // A probe renamed here shows on the dashboard under its new name.
    const names = page.locator('form[data-names="sim-1"]');
    await names.waitFor({ timeout: patience });
    await names.locator('input[name="probe-pit"]').fill("Dome");
    await names.locator("button[type=submit]").click();
    await page.locator("p.facts", { hasText: "Names of sim-1 saved" }).waitFor({ timeout: patience });
    await page.goto(`${url}#/`);
    await page.locator('[data-device="sim-1"] [data-probe="pit"]', { hasText: "Dome" }).waitFor({ timeout: patience });
    check(true, "a probe renamed in the Settings shows under its new name on the dashboard");
    await page.goto(`${url}#/settings`);
    await names.locator('input[name="probe-pit"]').fill("");
    await names.locator("button[type=submit]").click();
    await page.locator("p.facts", { hasText: "Names of sim-1 saved" }).waitFor({ timeout: patience });
  } finally {
    hook.close();
  }
}

/**
 * Escalation: with a second channel ("pager", its own receiver) and a rule that sends to
 * "phone" and escalates to "pager" after the shortest wait (30 s), the rule fires, nobody
 * acknowledges, and the pager gets the alert the phone had first.
 */
async function checkEscalation({ page, check, patience, form, url, phone }) {
  const pager = await receiver();
  try {
    await form.locator('input[name="name"]').fill("pager");
    await form.locator('input[name="url"]').fill(`http://127.0.0.1:${pager.port}/pager`);
    await form.locator('input[name="secret"]').fill("");
    await form.locator("button[type=submit]").click();
    await page.locator('li.channel[data-channel="pager"]').waitFor({ timeout: patience });
    // The rule form offers the channels there were when the page opened.
    await page.goto(`${url}#/`);
    await page.goto(`${url}#/settings`);
    const rules = page.locator('[data-testid="rule-form"]');
    await rules.waitFor({ timeout: patience });
    await rules.locator('select[name="device_id"]').selectOption("sim-1");
    await rules.locator('select[name="probe_id"]').selectOption("pit");
    await rules.locator('select[name="kind"]').selectOption("above");
    await rules.locator('input[name="threshold"]').fill("-40");
    await rules.locator('select[name="notify"]').selectOption("phone");
    await rules.locator('select[name="escalate_to"]').selectOption("pager");
    await rules.locator('input[name="repeat_every_s"]').fill("0.5");
    await rules.locator('input[name="label"]').fill("Escalating");
    await rules.locator("button[type=submit]").click();
    const row = page.locator('li.rule[data-rule-device="sim-1"]', { hasText: "Escalating" });
    await row.waitFor({ timeout: patience });
    check((await row.innerText()).includes("→ phone, then pager if not acknowledged within 0.5 min"), "the rule says where its alerts go and when they escalate");
    const deadline = Date.now() + patience;
    const aboutSim = (seen) => seen.filter(({ body }) => body.includes("sim-1")).length;
    while (aboutSim(pager.seen) === 0 && Date.now() < deadline) await page.waitForTimeout(250);
    check(aboutSim(pager.seen) > 0, `nobody acknowledged: the pager got the alert after the wait (${aboutSim(pager.seen)} notification)`);
    check(pager.seen.every(({ body }) => !/"repeat":\s*0\b/.test(body)), "the pager did not get the first raise");
    check(
      phone.seen.some(({ body }) => body.includes("sim-1") && /"repeat":\s*0\b/.test(body)) &&
        phone.seen.every(({ body }) => !body.includes("sim-1") || /"repeat":\s*0\b/.test(body)),
      "the phone got the first raise, and not the escalated one",
    );
    await row.locator("button.remove").click();
    await row.waitFor({ state: "detached", timeout: patience });
    await page.locator('[data-testid="remove-pager"]').click();
    await page.locator('li.channel[data-channel="pager"]').waitFor({ state: "detached", timeout: patience });
  } finally {
    pager.close();
  }
}

/** Starts the ThermoWorks Cloud stand-in (`emberline-ingest`'s `thermoworks-cloud`
 * example) on `port`; resolves with its URL once it serves. */
async function thermoworksCloud(binary, port) {
  const { spawn } = await import("node:child_process");
  const child = spawn(binary, [`127.0.0.1:${port}`], { stdio: ["ignore", "pipe", "inherit"] });
  const url = await new Promise((resolve, reject) => {
    let out = "";
    child.stdout.on("data", (chunk) => {
      out += chunk;
      const m = /stand-in on (\S+)/.exec(out);
      if (m) resolve(m[1]);
    });
    child.on("exit", (code) => reject(new Error(`the ThermoWorks stand-in exited (${code}): ${out}`)));
  });
  return { url, stop: () => child.kill("SIGKILL") };
}

/**
 * The thermometer accounts on the Settings page: an owner picks ThermoWorks, a wrong
 * password is refused in the cloud's words, "Find my devices" lists the account's Node
 * before anything is saved, and once saved the Node streams onto the dashboard; the
 * password is never shown.
 *
 * @param {object} t
 * @param {string} t.url the web UI's address, ending in "/"
 * @param {import("playwright-core").Page} t.page a page signed in as an owner
 * @param {(ok: boolean, message: string) => void} t.check
 * @param {string} t.thermoworks the stand-in's binary
 * @param {number} t.port a free port for it
 * @param {number} [t.patience] ms to wait for anything
 * @param {string} [t.artifacts] where to save a screenshot
 */
export async function checkAccounts({ url, page, check, thermoworks, port, patience = 60_000, artifacts }) {
  const cloud = await thermoworksCloud(thermoworks, port);
  try {
    await page.goto(`${url}#/settings`);
    const form = page.locator('[data-testid="source-form"]');
    await form.waitFor({ timeout: patience });
    const simulator = page.locator('li.source[data-source="simulator"]');
    await simulator.waitFor({ timeout: patience });
    check((await simulator.innerText()).includes("from the config file"), "the configuration file's source (the simulator) is listed read-only");
    check((await page.locator('[data-testid="remove-source-simulator"]').count()) === 0, "a source of the configuration file has no Remove button");
    await form.locator('[data-testid="source-kind"]').selectOption("thermoworks");
    await form.locator('input[name="name"]').fill("backyard");
    await form.locator('input[name="username"]').fill("cook@example.com");
    await form.locator('input[name="password"]').fill("not-the-password");
    await form.locator('input[name="poll_interval_s"]').fill("5");
    await form.locator('input[name="base_url"]').fill(cloud.url);
    await form.locator('[data-testid="find-devices"]').click();
    const refusal = form.locator("p.error", { hasText: /credentials rejected/ });
    await refusal.waitFor({ timeout: patience });
    check(true, `a wrong password is refused in the cloud's words ("${await refusal.innerText()}")`);

    const password = "s3cret";
    await form.locator('input[name="password"]').fill(password);
    await form.locator('[data-testid="find-devices"]').click();
    await form.locator('[data-found="A1"]', { hasText: "Back yard Node" }).waitFor({ timeout: patience });
    check((await form.locator("p.error").innerText()) === "", "\"Find my devices\" lists the account's Node, and the refusal is gone");
    check((await page.locator('li.source[data-source="backyard"]').count()) === 0, "finding devices saves nothing");

    await form.locator("button[type=submit]").click();
    const row = page.locator('li.source[data-source="backyard"]');
    await row.waitFor({ timeout: patience });
    const shown = await page.locator('[data-testid="sources"]').innerText();
    check(shown.includes("password set") && shown.includes("cook@example.com") && !shown.includes(password), "the saved account is listed with its password set and not shown");
    if (artifacts) await page.screenshot({ path: `${artifacts}/accounts-390.png`, fullPage: true });

    // Its Node streams onto the dashboard: the pit's number changes as the cloud uploads.
    await page.goto(`${url}#/`);
    const pit = page.locator('[data-device="A1"] [data-probe="1"] [data-testid="temp"]');
    await pit.waitFor({ timeout: patience });
    const first = await pit.innerText();
    await page.waitForFunction(
      ([selector, before]) => document.querySelector(selector)?.textContent !== before,
      ['[data-device="A1"] [data-probe="1"] [data-testid="temp"]', first],
      { timeout: patience },
    );
    check(true, `the account's Node streams onto the dashboard (pit ${first} → ${await pit.innerText()})`);

    await page.goto(`${url}#/settings`);
    await page.locator('[data-testid="remove-source-backyard"]').click();
    await page.locator('li.source[data-source="backyard"]').waitFor({ state: "detached", timeout: patience });
    check(true, "a removed account leaves the list");
  } finally {
    cloud.stop();
  }
}
