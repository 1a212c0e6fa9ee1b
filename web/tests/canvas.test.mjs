// Browser tests of the canvas: a real `voxgate serve` (its own temp data
// dir, loopback ports picked by the kernel) and Debian's Chromium driven by
// playwright-core. Run by `make test-web`; screenshots land in
// target/ui-screenshots/.
//
// VOXGATE_BIN: the binary (default target/release/voxgate).
// CHROMIUM:    the browser (default /usr/bin/chromium).

import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { apiCall as apiCall_, launchChromium, repo, startGateway, stopGateway } from "./harness.mjs";

const shots = join(repo, "target/ui-screenshots");
let gw; // { child, base, adminKey, dataDir, log }
let browser;
let page;
let editorKey;
const consoleErrors = [];
// HTTP answers a step provokes on purpose; Chromium logs each as a console
// error ("Failed to load resource: ... status of 412").
const expectedStatuses = new Set();
const timings = {};

const apiCall = (key, method, path, body, headers) => apiCall_(gw.base, key, method, path, body, headers);

async function shot(name) {
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
}

/** Times one test step into the JSON printed at the end. */
async function timed(name, fn) {
  const t0 = performance.now();
  try {
    await fn();
  } catch (e) {
    // What the page looked like when the step failed, for the reviewer.
    await shot(`failed-${name}`).catch(() => {});
    throw e;
  }
  timings[name] = Math.round(performance.now() - t0);
}

const node = (id) => page.locator(`.react-flow__node[data-id="${id}"]`);

async function dropNode(type, x, y) {
  const count = await page.locator(".react-flow__node").count();
  await page.dragAndDrop(`.palette-item[data-node-type="${type}"]`, ".flow-wrap", { targetPosition: { x, y } });
  await assert.doesNotReject(page.locator(".react-flow__node").nth(count).waitFor());
}

/** Drags an edge from an outcome's handle to a node's input handle. */
async function connect(source, outcome, target) {
  const from = await node(source).locator(`.out-handle[data-outcome="${outcome}"]`).boundingBox();
  const to = await node(target).locator(".in-handle").boundingBox();
  assert.ok(from && to, `handles of ${source}.${outcome} and ${target}`);
  await page.mouse.move(from.x + from.width / 2, from.y + from.height / 2);
  await page.mouse.down();
  await page.mouse.move(to.x + to.width / 2, to.y + to.height / 2, { steps: 12 });
  await page.mouse.up();
  await page.locator(`.react-flow__edge[data-id="${source}:${outcome}"]`).waitFor();
}

async function select(id) {
  await node(id).locator(".node-name").click();
  await page.locator(`section.props[aria-label="Properties of ${id}"]`).waitFor();
}

async function waitSaved() {
  await page.waitForFunction(() => document.querySelector('[data-testid="status"]')?.textContent === "Draft saved");
}

before(async () => {
  mkdirSync(shots, { recursive: true });
  gw = await startGateway();
  const tenant = await apiCall(gw.adminKey, "POST", "/v1/tenants", { id: "acme", name: "Acme" });
  assert.equal(tenant.status, 201, JSON.stringify(tenant.json));
  const key = await apiCall(gw.adminKey, "POST", "/v1/keys", { role: "editor", tenant: "acme", label: "canvas test" });
  assert.equal(key.status, 201, JSON.stringify(key.json));
  editorKey = key.json.token;

  browser = await launchChromium();
  page = browser.page;
  page.on("console", (m) => {
    if (m.type() !== "error") return;
    const status = m.text().match(/status of (\d{3})/);
    if (status && expectedStatuses.has(Number(status[1]))) return;
    consoleErrors.push(m.text());
  });
  page.on("pageerror", (e) => consoleErrors.push(`page error: ${e.message}`));
});

after(async () => {
  await browser?.close();
  if (gw) await stopGateway(gw);
  console.log(JSON.stringify({ canvas_test_ms: timings, screenshots: shots }));
});

test("/ui answers the app, and its routes fall back to index.html", async () => {
  const root = await fetch(`${gw.base}/ui/`);
  assert.equal(root.status, 200);
  assert.match(await root.text(), /<div id="root">/);
  const deep = await fetch(`${gw.base}/ui/flows/acme/support`);
  assert.equal(deep.status, 200);
  const missing = await fetch(`${gw.base}/ui/assets/nope-123.js`);
  assert.equal(missing.status, 404);
});

test("scenario 1: sign in, build say/menu/transfer/hangup by drag and drop, fix a validation error, publish", async () => {
  await timed("scenario1", async () => {
    await page.goto(`${gw.base}/ui/`);
    await page.getByLabel("API key").fill(editorKey);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByLabel("New flow id").fill("support");
    await shot("01-flows-empty");
    await page.getByRole("button", { name: "Create flow" }).click();
    await page.getByText("Drag a node here from the palette.").waitFor();

    await dropNode("say", 140, 120);
    await page.getByLabel("Text").fill("Welcome to Acme.");
    await dropNode("menu", 480, 120);
    await page.getByLabel("Prompt (spoken)").fill("Press 1 for an agent.");
    await page.getByLabel("Options (digits, comma separated)").fill("1");
    await dropNode("transfer", 140, 400);
    // Not a SIP address: the API must flag it on this node.
    await page.getByLabel("Target (sip: or tel:)").fill("agent-desk");
    await dropNode("hangup", 480, 400);

    await connect("say_1", "next", "menu_1");
    await connect("menu_1", "1", "transfer_1");
    await connect("transfer_1", "failed", "hangup_1");
    await waitSaved();

    const errors = page.getByTestId("errors-transfer_1");
    await errors.waitFor();
    assert.match(await errors.textContent(), /sip:, sips: or tel:/);
    assert.equal(await page.locator(".flow-node.has-errors").count(), 1, "only the transfer node has errors");
    await shot("02-validation-error-on-node");

    await select("transfer_1");
    await page.getByLabel("Target (sip: or tel:)").fill("sip:agent@127.0.0.1");
    await errors.waitFor({ state: "detached" });
    await waitSaved();

    await page.getByLabel("What changed").fill("first version");
    await page.getByRole("button", { name: "Publish", exact: true }).click();
    await page.getByRole("status").filter({ hasText: "Published version 1" }).waitFor();
    await page.locator('.version-list li[data-version="1"].live').waitFor();
    await shot("03-published");

    const flows = await apiCall(editorKey, "GET", "/v1/tenants/acme/flows");
    const support = flows.json.items.find((f) => f.flow_id === "support");
    assert.equal(support.live?.version, 1);
    const v1 = await apiCall(editorKey, "GET", "/v1/tenants/acme/flows/support/versions/1");
    const doc = v1.json.document;
    assert.equal(doc.entry, "say_1");
    assert.deepEqual(doc.nodes.say_1.edges, { next: "menu_1" });
    assert.deepEqual(doc.nodes.menu_1.edges, { 1: "transfer_1" });
    assert.deepEqual(doc.nodes.transfer_1.edges, { failed: "hangup_1" });
    assert.equal(doc.nodes.transfer_1.target, "sip:agent@127.0.0.1");
    assert.equal(doc.nodes.hangup_1.type, "hangup");
  });
});

test("scenario 3: publish a second version, roll back in the UI, the API shows the old one live", async () => {
  await timed("scenario3", async () => {
    await select("say_1");
    await page.getByLabel("Text").fill("Welcome back to Acme.");
    await waitSaved();
    await page.getByLabel("What changed").fill("new greeting");
    await page.getByRole("button", { name: "Publish", exact: true }).click();
    await page.locator('.version-list li[data-version="2"].live').waitFor();
    let flows = await apiCall(editorKey, "GET", "/v1/tenants/acme/flows");
    assert.equal(flows.json.items.find((f) => f.flow_id === "support").live.version, 2);
    await page.getByRole("button", { name: "Show changes in version 2" }).click();
    const changes = page.getByRole("region", { name: "Changes in v2" });
    assert.match(await changes.textContent(), /say_1: text/);

    await page.getByRole("button", { name: "Roll back to version 1" }).click();
    await page.getByText("Version 1 is live again.").waitFor();
    await page.locator('.version-list li[data-version="1"].live').waitFor();
    await shot("04-rolled-back");

    flows = await apiCall(editorKey, "GET", "/v1/tenants/acme/flows");
    assert.equal(flows.json.items.find((f) => f.flow_id === "support").live.version, 1);
    const live = await apiCall(editorKey, "GET", "/v1/tenants/acme/flows/support/versions/1");
    assert.equal(live.json.live, true);
    assert.equal(live.json.document.nodes.say_1.text, "Welcome to Acme.");

    await page.getByRole("button", { name: "All flows" }).click();
    const row = page.locator('tr[data-flow="support"]');
    await row.waitFor();
    assert.match(await row.textContent(), /v1/);
    assert.match(await row.textContent(), /canvas test \[/, "who published it");
    await shot("05-flows-list");
  });
});

test("a draft changed by someone else is not overwritten: the editor says so", async () => {
  await timed("conflict", async () => {
    await page.getByRole("button", { name: "Open support" }).click();
    await node("say_1").waitFor();
    const draft = await apiCall(editorKey, "GET", "/v1/tenants/acme/flows/support");
    const changed = { ...draft.json.document, name: "changed elsewhere" };
    const put = await apiCall(editorKey, "PUT", "/v1/tenants/acme/flows/support", changed, { "If-Match": draft.etag });
    assert.equal(put.status, 200);

    expectedStatuses.add(412);
    await select("hangup_1");
    await page.getByLabel("Reason").fill("done");
    await page.getByRole("alert").filter({ hasText: "Someone else changed this flow" }).waitFor();
    await shot("06-conflict");
    await page.getByRole("button", { name: "Reload the flow" }).click();
    await page.getByRole("alert").filter({ hasText: "Someone else changed this flow" }).waitFor({ state: "detached" });
    assert.equal(await page.getByLabel("Name", { exact: true }).inputValue(), "changed elsewhere");
    expectedStatuses.delete(412);
  });
});

test("keyboard: a palette entry adds a node with Enter, and focus is visible", async () => {
  const before = await page.locator(".react-flow__node").count();
  const item = page.locator('.palette-item[data-node-type="play"]');
  await item.focus();
  await page.keyboard.press("Enter");
  await page.locator(".react-flow__node").nth(before).waitFor();
  const outline = await item.evaluate((el) => getComputedStyle(el).outlineStyle);
  assert.notEqual(outline, "none", "focused control shows an outline");
  await shot("07-keyboard");
});

test("no console errors", () => {
  assert.deepEqual(consoleErrors, []);
});
