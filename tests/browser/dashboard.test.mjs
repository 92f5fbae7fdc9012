// messaging-api's dashboard in a real headless Chromium: sign in with the
// bootstrap key, generate a key and use it once, revoke it, add an
// allowlist network, refuse a cross-site form, sign out. Run by
// .ci/browser.sh, which starts the server and sets:
//   BASE_URL       the server, http://127.0.0.1:PORT
//   BOOTSTRAP_KEY  its bootstrap key (read from its output)
//   ARTIFACTS      where screenshots go
//   CHROMIUM       the browser (default /usr/bin/chromium)
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { createServer } from "node:http";
import { join } from "node:path";
import { chromium } from "playwright-core";

const base = required("BASE_URL");
const bootstrapKey = required("BOOTSTRAP_KEY");
const artifacts = process.env.ARTIFACTS ?? "artifacts";
mkdirSync(artifacts, { recursive: true });

function required(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

async function api(method, path, key) {
  const response = await fetch(base + path, {
    method,
    headers: { authorization: `Bearer ${key}` },
  });
  return response.status;
}

async function screenshot(page, name) {
  await page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true });
}

let step = "start";
const steps = [];
function begin(name) {
  step = name;
  steps.push(name);
  console.log(`- ${name}`);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox"],
});
// A second origin serving a forged form (another port is another site's origin).
const evil = createServer((_, response) => {
  response.writeHead(200, { "content-type": "text/html" });
  response.end(
    `<!doctype html><form method="post" action="${base}/dashboard/keys">` +
      `<input name="label" value="forged"><input name="type" value="production">` +
      `<button type="submit">Win a prize</button></form>`,
  );
});
await new Promise((resolve) => evil.listen(0, "127.0.0.1", resolve));
const evilUrl = `http://localhost:${evil.address().port}/`;

try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const errors = [];
  page.on("console", (message) => {
    if (message.type() === "error") errors.push(message.text());
  });
  const failed = [];
  page.on("response", (response) => {
    if (response.status() >= 400) failed.push(`${response.status()} ${response.url()}`);
  });

  begin("sign in with the bootstrap key");
  await page.goto(`${base}/dashboard`);
  assert.match(page.url(), /\/dashboard\/sign-in/);
  await screenshot(page, "sign-in");
  await page.getByLabel("API key").fill(bootstrapKey);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL(`${base}/dashboard/keys`);
  await page.getByRole("heading", { name: "API Keys", level: 1 }).waitFor();
  const [cookie] = await context.cookies();
  assert.equal(cookie.name, "tg_session");
  assert.equal(cookie.httpOnly, true);
  assert.equal(cookie.sameSite, "Strict");
  assert.equal(cookie.path, "/dashboard");
  assert.equal(await page.evaluate(() => document.cookie), "", "the cookie is HttpOnly");
  assert.equal(await page.evaluate(() => localStorage.length + sessionStorage.length), 0);
  assert.ok(!(await page.content()).includes(bootstrapKey), "the key is not in the page");

  begin("generate a key and read it once");
  await page.getByLabel("Label").fill("Browser test");
  await page.getByLabel("Type").selectOption("production");
  await page.getByRole("button", { name: "Generate New Key" }).click();
  await page.waitForURL(`${base}/dashboard/keys`);
  const newKey = await page.locator("#new-key").inputValue();
  assert.match(newKey, /^tg_live_[0-9A-Za-z]{36}$/);
  await page.getByText("Copy the key immediately — it won’t be shown again.").waitFor();
  await page.getByRole("button", { name: "Copy" }).click();
  await page.locator('[data-copy-status="new-key"]').filter({ hasText: /copy|Copied/i }).waitFor();
  await screenshot(page, "keys-new-key");
  assert.equal(await api("GET", "/v1/keys", newKey), 200, "the new key works");
  await page.reload();
  assert.ok(!(await page.content()).includes(newKey), "a reload does not show it again");
  assert.equal(await page.locator("#new-key").count(), 0);
  await screenshot(page, "keys");

  begin("revoke it in the page; the API refuses it");
  await page.getByRole("link", { name: "Revoke Browser test" }).click();
  await page.getByRole("heading", { name: "Revoke key" }).waitFor();
  await screenshot(page, "revoke-confirm");
  await page.getByRole("button", { name: "Revoke" }).click();
  await page.waitForURL(`${base}/dashboard/keys`);
  await page.getByText(/is revoked\./).waitFor();
  assert.equal(await api("GET", "/v1/keys", newKey), 401, "the revoked key is refused");
  assert.ok(!(await page.content()).includes(newKey));

  begin("add an allowlist network containing 127.0.0.1");
  await page.getByRole("link", { name: "Security" }).click();
  await page.waitForURL(`${base}/dashboard/security`);
  await page.locator("#cidr-account").fill("127.0.0.0/8");
  await page.locator("#cidr-account").press("Enter");
  await page.waitForURL(`${base}/dashboard/security`);
  await page.getByText("Saved: 1 network(s) allowed.").waitFor();
  await page.getByRole("button", { name: "Remove 127.0.0.0/8" }).waitFor();
  await screenshot(page, "security");
  assert.equal(await api("GET", "/v1/keys", bootstrapKey), 200, "still allowed");

  begin("webhooks and usage pages");
  await page.getByRole("link", { name: "Webhooks" }).click();
  await page.getByRole("heading", { name: "Webhooks", level: 1 }).waitFor();
  await screenshot(page, "webhooks");
  await page.getByRole("link", { name: "Usage" }).click();
  await page.getByRole("heading", { name: "Usage", level: 1 }).waitFor();
  assert.ok((await page.locator("svg.chart").count()) >= 1, "a chart per key");
  await screenshot(page, "usage");

  begin("a forged cross-site POST is refused");
  const forged = await context.newPage();
  await forged.goto(evilUrl);
  const [response] = await Promise.all([
    forged.waitForNavigation(),
    forged.getByRole("button", { name: "Win a prize" }).click(),
  ]);
  assert.equal(response.status(), 403);
  await screenshot(forged, "forged-post");
  await forged.close();
  const listed = await fetch(`${base}/v1/keys`, { headers: { authorization: `Bearer ${bootstrapKey}` } });
  const labels = (await listed.json()).data.map((key) => key.label);
  assert.ok(!labels.includes("forged"), `no forged key: ${labels}`);

  begin("keyboard only: tab to Sign out and press Enter");
  const signOut = page.getByRole("button", { name: "Sign out" });
  await signOut.focus();
  await page.keyboard.press("Enter");
  await page.waitForURL(/\/dashboard\/sign-in\?ended=signed-out/);
  await page.getByText("You are signed out.").waitFor();
  await screenshot(page, "signed-out");
  const old = await fetch(`${base}/dashboard/keys`, {
    headers: { cookie: `${cookie.name}=${cookie.value}` },
    redirect: "manual",
  });
  assert.equal(old.status, 303, "the old cookie is refused");
  assert.equal(old.headers.get("location"), "/dashboard/sign-in?ended=required");

  assert.deepEqual(failed, [], "every resource loads");
  assert.deepEqual(errors, [], "no console errors (a CSP violation would be one)");
  console.log(`dashboard browser test: ${steps.length} steps passed; screenshots in ${artifacts}`);
} catch (error) {
  console.error(`dashboard browser test failed at "${step}":`, error);
  process.exitCode = 1;
} finally {
  await browser.close();
  evil.close();
}
