// The Settings page in headless Chromium: an owner adds a webhook channel pointing at a
// local receiver, a bad URL is refused next to the URL field in the server's words, the
// saved channel is listed without its secret, and "Send a test" reaches the receiver,
// signed with the secret typed in; a probe renamed there shows so on the dashboard.

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
export async function checkSettings({ url, page, check, patience = 60_000, artifacts }) {
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

    await page.locator('[data-testid="remove-phone"]').click();
    await page.locator('[data-testid="channels"] li.empty').waitFor({ timeout: patience });
    check(true, "a removed channel leaves the list");

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
