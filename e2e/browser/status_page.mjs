// Drives the proxy's status page in Debian's headless Chromium through playwright-core, as a
// person would: open /status, type the management secret, wait for the accounts, wait for an
// account to show a cooldown, press the login button and read the login link. Prints one JSON
// object with what the page showed (the Rust test in conformance/tests/status_page.rs checks
// it). Bounded: every wait has a timeout, and the whole run is killed by the caller's limit.
//
// Environment: CURSORPOOL_URL (the proxy's base URL), CURSORPOOL_SECRET (its management
// secret), CURSORPOOL_COOLING (the account expected to rest), CHROMIUM (default
// /usr/bin/chromium), SCREENSHOT (optional PNG path).

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const base = process.env.CURSORPOOL_URL;
const secret = process.env.CURSORPOOL_SECRET;
const cooling = process.env.CURSORPOOL_COOLING;
const WAIT = 20000;

const profile = mkdtempSync(join(tmpdir(), "cursorpool-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
const out = {};
try {
  const page = context.pages()[0] || (await context.newPage());
  const consoleErrors = [];
  page.on("pageerror", (e) => consoleErrors.push(String(e)));
  const resp = await page.goto(base + "/status", { timeout: WAIT });
  out.status = resp.status();
  out.title = await page.title();
  out.asked_for_secret = await page.isVisible("#secret");

  // A wrong secret is refused on the page.
  await page.fill("#secret", "not-the-secret");
  await page.click("#open");
  await page.waitForFunction(() => document.getElementById("secret-error").textContent.length > 0, null, { timeout: WAIT });
  out.wrong_secret_error = await page.textContent("#secret-error");

  await page.fill("#secret", secret);
  await page.click("#open");
  await page.waitForSelector("#accounts tr[data-account]", { timeout: WAIT });
  await page.waitForFunction(
    (name) => {
      const row = document.querySelector(`#accounts tr[data-account="${name}"]`);
      return row && row.querySelector(".state.cooling") && row.querySelector(".cooldown").textContent.includes("s");
    },
    cooling,
    { timeout: WAIT },
  );
  out.accounts = await page.$$eval("#accounts tr[data-account]", (rows) =>
    rows.map((tr) => ({
      name: tr.dataset.account,
      state: tr.querySelector(".state").textContent,
      cooldown: tr.querySelector(".cooldown").textContent,
      cells: [...tr.querySelectorAll("td")].map((td) => td.textContent),
    })),
  );
  out.summary = await page.textContent("#summary");
  out.error_kinds = await page.$$eval("#errors .error-kind", (tds) => tds.map((td) => td.textContent));
  out.secret_in_storage = await page.evaluate(() => sessionStorage.getItem("cursorpool-secret") !== null);

  await page.fill("#login-label", "browser");
  await page.click("#login");
  await page.waitForFunction(() => (document.getElementById("login-url").getAttribute("href") || "").length > 0, null, { timeout: WAIT });
  out.login_url = await page.getAttribute("#login-url", "href");
  out.login_status = await page.textContent("#login-status");
  if (process.env.SCREENSHOT) await page.screenshot({ path: process.env.SCREENSHOT, fullPage: true });
  out.page_errors = consoleErrors;
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify(out));
