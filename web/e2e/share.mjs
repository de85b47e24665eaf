// End-to-end check of live share links, called by run.mjs with a signed-in page.
//
// From the signed-in device page a share link is created for the running cook; opened in a
// fresh browser context (no cookies) it shows the cook live (device name, probe temperatures
// that update, the cook) with no control to press; the same browser is not signed in by it
// (`/` shows the sign-in page); once the link is revoked, the open page and a reload say the
// link has ended and show nothing of the cook. Given the binary and data directory, a viewer
// is added and shown no way to share.

import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";

/** Calls one grpc-web method from `page` (with its cookies); `body` is the request's
 * protobuf encoding as an array of bytes. Resolves with the response message's bytes. */
export function grpcWeb(page, method, body) {
  return page.evaluate(
    async ([method, body]) => {
      const framed = new Uint8Array(5 + body.length);
      new DataView(framed.buffer).setUint32(1, body.length);
      framed.set(body, 5);
      const res = await fetch(`/emberline.v1.${method}`, {
        method: "POST",
        headers: { "content-type": "application/grpc-web+proto", "x-grpc-web": "1" },
        body: framed,
      });
      const bytes = new Uint8Array(await res.arrayBuffer());
      let message = [];
      let status = res.headers.get("grpc-status") ?? "";
      let said = res.headers.get("grpc-message") ?? "";
      for (let i = 0; i + 5 <= bytes.length; ) {
        const len = new DataView(bytes.buffer, bytes.byteOffset + i + 1, 4).getUint32(0);
        const chunk = bytes.slice(i + 5, i + 5 + len);
        if (bytes[i] & 0x80) {
          const trailers = new TextDecoder().decode(chunk);
          status = /grpc-status:\s*(\d+)/i.exec(trailers)?.[1] ?? status;
          said = /grpc-message:\s*(.*)/i.exec(trailers)?.[1]?.trim() ?? said;
        } else message = [...chunk];
        i += 5 + len;
      }
      return { status, said: decodeURIComponent(said), message };
    },
    [method, body],
  );
}

/** The protobuf encoding of string fields: `{ 1: "a", 2: "b" }`. */
export function encodeStrings(fields) {
  const out = [];
  for (const [n, value] of Object.entries(fields)) {
    const bytes = [...new TextEncoder().encode(value)];
    out.push((Number(n) << 3) | 2);
    for (let len = bytes.length; ; len >>= 7) {
      if (len < 0x80) {
        out.push(len);
        break;
      }
      out.push((len & 0x7f) | 0x80);
    }
    out.push(...bytes);
  }
  return out;
}

/**
 * @param {object} t
 * @param {import("playwright-core").Browser} t.browser
 * @param {string} t.url the web UI's address, ending in "/"
 * @param {import("playwright-core").Page} t.page a signed-in page (owner or cook)
 * @param {(ok: boolean, message: string) => void} t.check
 * @param {number} [t.patience] ms to wait for anything
 * @param {string} [t.artifacts] where to save screenshots
 * @param {string} [t.binary] the emberline binary and
 * @param {string} [t.dataDir] the data directory `up` runs on: to add a viewer
 */
export async function checkShare({ browser, url, page, check, patience = 60_000, artifacts, binary, dataDir }) {
  // The signed-in device page: the simulator's cook is in progress; start one if it is not.
  await page.goto(`${url}#/device/sim-1`);
  await page.locator(".device-head h2").filter({ hasText: "Simulated grill 1" }).waitFor();
  const running = page.locator(".cooks li", { hasText: "in progress" });
  try {
    await running.first().waitFor({ timeout: 10_000 });
  } catch {
    const started = await grpcWeb(page, "CookService/StartCook", encodeStrings({ 1: "sim-1", 2: "Shared brisket" }));
    check(started.status === "0", `a cook is started for sharing (${started.status} ${started.said})`);
    await page.reload();
    await running.first().waitFor();
  }
  const cook = running.first();
  const cookId = await cook.getAttribute("data-cook");
  const what = await cook.locator("strong").innerText();

  // The owner shares it: the full address is shown, with a copy button.
  await cook.locator("button.share-create").click();
  const field = cook.locator("input.share-url");
  await field.waitFor();
  const link = await field.inputValue();
  check(new RegExp(`^${url.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}s/ems_[A-Za-z0-9_-]+$`).test(link), `"Share live link" shows the link's full address (${link.slice(0, url.length + 10)}…)`);
  check(await cook.locator("button.share-copy").isVisible(), "the link comes with a Copy button");
  if (artifacts) await page.screenshot({ path: `${artifacts}/share-create-390x844.png`, fullPage: true });

  // Whoever has the link: a browser with no cookies at all.
  const stranger = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2 });
  // Another one keeps the link open, to see it end live. (Not a second tab of the first: a
  // cook page holds three streams, and a browser opens at most six HTTP/1.1 connections to
  // one host, so two such tabs leave no connection for loading anything else.)
  const onlooker = await browser.newContext();
  try {
    const shared = await stranger.newPage();
    shared.setDefaultTimeout(patience);
    shared.on("pageerror", (e) => console.error(`[share page error] ${e.message}`));
    const authorizations = new Set();
    shared.on("request", (r) => {
      if (r.url().includes("/emberline.v1.")) authorizations.add(r.headers().authorization ?? "(none)");
    });
    await shared.goto(link);
    await shared.locator(".device-head h2").filter({ hasText: "Simulated grill 1" }).waitFor();
    await shared.locator('[data-probe="pit"] .temp').filter({ hasText: "°" }).waitFor();
    const temps = await shared.locator(".probe .temp").allInnerTexts();
    check(temps.length >= 2 && temps.some((t) => /\d°/.test(t)), `the share link opens the cook's live page in a fresh browser: device name and probe temperatures (${temps.join(", ")})`);
    await shared.waitForFunction(() => (window.__emberline.chart().pit ?? []).length >= 2);
    const before = await shared.evaluate(() => window.__emberline.chart().pit.length);
    const firstTile = await shared.locator('[data-probe="pit"] .age').innerText();
    await shared.waitForFunction((n) => window.__emberline.chart().pit.length >= n + 2, before);
    check(true, `the shared page updates live (pit chart ${before} → ≥${before + 2} points; tile "${firstTile}")`);
    const cookText = await shared.locator(".shared-cook").innerText();
    check(cookText.includes(what) && /Started/.test(cookText), `the shared page names the cook and its start ("${cookText.replace(/\s+/g, " ")}")`);
    const noteText = await shared.locator('[data-testid="share-note"]').innerText();
    check(/Shared cook — read only/.test(noteText), `the shared page says it is read only ("${noteText}")`);
    check(
      [...authorizations].every((a) => a.startsWith("Bearer ems_")) && authorizations.size === 1,
      "every call of the shared page carries the link's token as a bearer",
    );
    await shared.waitForFunction(() => window.__emberline.insight()?.feeds.every((f) => f === "live"));
    check(true, "predictions and alerts reach the shared page by subscription");
    if (artifacts) await shared.screenshot({ path: `${artifacts}/share-390x844.png`, fullPage: true });

    // Nothing to press that changes the cook, signs in or out, or leads elsewhere.
    const buttons = await shared.locator("button").allInnerTexts();
    const forbidden = buttons.filter((b) => /target|cook|ack|snooze|sign|share|stop|csv|note|end|start|delete|plan/i.test(b));
    check(forbidden.length === 0, `no control on the shared page (buttons: ${buttons.map((b) => b.trim()).join(" ")})`);
    const controls = await shared.locator("button.signout, .share-create, .share-revoke, .alerts button, .cooks button, a[href], input:not([type=hidden]), select, textarea, form").count();
    check(controls === 0, "no sign-out, share, acknowledge or cook button, no link to other pages, no form on the shared page");
    const kept = await shared.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }) + document.cookie);
    check(!/ems_/.test(kept), "the link's token is kept in no storage and no cookie");

    // The link signs nobody in: the app's own pages still ask to sign in.
    const watcher = await onlooker.newPage();
    watcher.setDefaultTimeout(patience);
    await watcher.goto(link);
    await watcher.locator('[data-probe="pit"] .temp').filter({ hasText: "°" }).waitFor();
    const signInForm = shared.locator('.auth-form input[name="password"][autocomplete="current-password"]');
    for (const where of [url, `${url}#/`]) {
      await shared.goto(where);
      await signInForm.waitFor();
      const text = await shared.locator("body").innerText();
      check(
        new URL(shared.url()).hash === "#/signin" && (await shared.locator("[data-device]").count()) === 0 && !text.includes("Simulated grill"),
        `in the link's browser, ${where.slice(url.length - 1)} shows the sign-in page: the link signs nobody in`,
      );
    }

    // Revoked from the signed-in page: the link ends, for the open page and on reload.
    const links = await grpcWeb(page, "ShareService/ListShareLinks", encodeStrings({ 1: cookId }));
    check(links.status === "0" && links.message.length > 0, "the signed-in page lists the cook's share links");
    await cook.locator("button.share-revoke").click();
    await cook.locator("button.share-create").waitFor();
    const after = await grpcWeb(page, "ShareService/ListShareLinks", encodeStrings({ 1: cookId }));
    check(after.status === "0" && after.message.length < links.message.length, "\"Stop sharing\" revokes the link (RevokeShareLink)");
    await shared.goto(link);
    const ended = shared.locator('[data-testid="share-ended"]');
    await ended.waitFor();
    const endedText = await shared.locator("body").innerText();
    check(
      /This share link has ended/.test(endedText) && !endedText.includes("Simulated grill") && (await shared.locator(".probe").count()) === 0,
      "after revoking, the link's page says \"This share link has ended\" and shows nothing of the cook",
    );
    if (artifacts) await shared.screenshot({ path: `${artifacts}/share-ended-390x844.png`, fullPage: true });
    await watcher.locator('[data-testid="share-ended"]').waitFor({ timeout: 30_000 });
    check((await watcher.locator(".probe").count()) === 0, "a shared page left open says the link ended within moments, and clears the cook");
  } finally {
    await stranger.close();
    await onlooker.close();
  }

  // A viewer may watch the cook but is offered no way to share it.
  if (binary && dataDir) {
    const viewer = { user: "onlooker", password: "just-looking-9" };
    const passwordFile = join(dataDir, "viewer-password");
    writeFileSync(passwordFile, `${viewer.password}\n`, { mode: 0o600 });
    execFileSync(binary, ["--data-dir", dataDir, "user", "add", viewer.user, "--role", "viewer", "--password-file", passwordFile], { stdio: "ignore" });
    const viewerContext = await browser.newContext();
    try {
      const looking = await viewerContext.newPage();
      looking.setDefaultTimeout(patience);
      await looking.goto(`${url}#/device/sim-1`);
      await looking.locator('.auth-form input[name="password"]').waitFor();
      await looking.locator('input[name="user"]').fill(viewer.user);
      await looking.locator('input[name="password"]').fill(viewer.password);
      await looking.locator(".auth-form button[type=submit]").click();
      const inProgress = looking.locator(".cooks li", { hasText: "in progress" });
      await inProgress.first().waitFor();
      const who = await looking.locator(".who").innerText();
      check(
        /viewer/.test(who) && (await looking.locator(".share-create, .share-url").count()) === 0 && (await page.locator(".share-create").count()) > 0,
        `a viewer ("${who}") sees the cook in progress but no "Share live link" button; the owner does`,
      );
    } finally {
      await viewerContext.close();
    }
  }
}
