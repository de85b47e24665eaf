// "Sign in with …" through a real OpenID provider (oidc-provider, from emberline/tests/oidc):
// the provider is started before `emberline up`, whose web client returns to the page's
// callback; the check signs in on the provider's login page in a fresh browser and lands
// on the dashboard, signed in with the tenant and role the provider's account names.

import { spawn } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createInterface } from "node:readline";

const here = dirname(fileURLToPath(import.meta.url));
const providerDir = join(here, "..", "..", "emberline", "tests", "oidc");

/** Starts the provider on `port`; resolves once it listens, with the env `up` needs. */
export async function startProvider({ port, webPort, dataDir }) {
  const child = spawn("node", [join(providerDir, "provider.mjs"), String(port), join(dataDir, "oidc-keys.json")], {
    stdio: ["ignore", "pipe", "inherit"],
    env: { ...process.env, EMBERLINE_WEB_REDIRECT: `http://127.0.0.1:${webPort}/auth/oidc/callback` },
  });
  const lines = createInterface({ input: child.stdout });
  await new Promise((resolve, reject) => {
    child.on("exit", (code) => reject(new Error(`the OpenID provider exited (${code}); run npm ci in emberline/tests/oidc`)));
    lines.on("line", (line) => {
      if (line.includes("listening")) resolve();
    });
  });
  const issuer = `http://127.0.0.1:${port}`;
  return {
    env: {
      EMBERLINE__AUTH__OIDC__ISSUER: issuer,
      EMBERLINE__AUTH__OIDC__CLIENT_ID: "emberline-web",
      EMBERLINE__AUTH__OIDC__SCOPE: "openid api",
      EMBERLINE__AUTH__OIDC__RESOURCE: "https://emberline.test/api",
    },
    stop: () => child.kill("SIGKILL"),
  };
}

export async function checkProviderSignIn({ browser, url, check, patience }) {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(url);
  const button = page.locator("#oidc-sign-in");
  await button.waitFor({ timeout: patience });
  check(/Sign in with 127\.0\.0\.1:\d+/.test(await button.innerText()), `the sign-in page offers the provider ("${await button.innerText()}")`);
  await button.click();
  await page.locator('input[name="login"]').waitFor({ timeout: patience });
  check(!page.url().startsWith(url), `the button leads to the provider's login page (${new URL(page.url()).origin})`);
  await page.fill('input[name="login"]', "default.viewer");
  await page.fill('input[name="password"]', "anything");
  await page.locator('button[type="submit"]').click();
  await page.waitForURL((u) => u.toString().startsWith(url), { timeout: patience });
  await page.getByText("Simulated grill 1").first().waitFor({ timeout: patience });
  check(true, "back from the provider, the dashboard lists the simulated device");
  const header = await page.locator("[data-testid=who]").innerText();
  check(/default\.viewer/.test(header) && /viewer/.test(header), `signed in as the provider's account with its role ("${header.replace(/\s+/g, " ").slice(0, 80)}")`);
  check(!(await page.evaluate(() => document.cookie)).includes("emberline_"), "the provider's token stays out of the page's reach");
  await context.close();
}
