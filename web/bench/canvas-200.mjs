// How the canvas copes with a 200-node flow: a real `voxgate serve`, the
// built UI and Debian's Chromium. Prints JSON; asserts nothing about speed.
//
//   node bench/canvas-200.mjs        (after `make web` and a release build)

import { apiCall, launchChromium, startGateway, stopGateway } from "../tests/harness.mjs";

const N = Number(process.env.CANVAS_NODES ?? 200);

/** A chain of `say` nodes in a grid, ending in a hang-up. */
function bigFlow(id) {
  const nodes = {};
  for (let i = 0; i < N - 1; i++) {
    nodes[`n${i}`] = {
      type: "say",
      text: `Step ${i}`,
      position: { x: 260 * (i % 20), y: 160 * Math.floor(i / 20) },
      edges: { next: i === N - 2 ? "end" : `n${i + 1}` },
    };
  }
  nodes.end = { type: "hangup", position: { x: 0, y: 160 * Math.ceil(N / 20) } };
  return { id, name: `${N} nodes`, entry: "n0", nodes };
}

const gw = await startGateway();
const browser = await launchChromium();
const page = browser.page;
try {
  await apiCall(gw.base, gw.adminKey, "POST", "/v1/tenants", { id: "bench", name: "Bench" });
  const created = await apiCall(gw.base, gw.adminKey, "POST", "/v1/tenants/bench/flows", bigFlow("big"));
  if (created.status !== 201) throw new Error(`create: ${created.status} ${JSON.stringify(created.json)}`);

  await page.goto(`${gw.base}/ui/`);
  await page.getByLabel("API key").fill(gw.adminKey);
  await page.getByRole("button", { name: "Sign in" }).click();
  const t0 = performance.now();
  await page.getByRole("button", { name: "Open big" }).click();
  await page.locator(".react-flow__node").nth(N - 1).waitFor({ state: "attached" });
  await page.waitForFunction(() => document.querySelector('[data-testid="status"]')?.textContent === "");
  const openMs = performance.now() - t0;

  // One keystroke in a property field until the node on the canvas shows it.
  await page.locator('.react-flow__node[data-id="n0"] .node-name').click();
  const label = page.getByLabel("Label", { exact: true });
  const keys = [];
  for (const ch of "abcdefghij") {
    const t = performance.now();
    await label.press(ch);
    await page.waitForFunction(
      (want) => document.querySelector('.react-flow__node[data-id="n0"] .node-name')?.textContent?.endsWith(want),
      ch,
    );
    keys.push(performance.now() - t);
  }
  // Dragging a node across the canvas: frames the page drew per move.
  const box = await page.locator('.react-flow__node[data-id="n5"]').boundingBox();
  const t1 = performance.now();
  await page.mouse.move(box.x + 20, box.y + 10);
  await page.mouse.down();
  await page.mouse.move(box.x + 220, box.y + 110, { steps: 30 });
  await page.mouse.up();
  const dragMs = performance.now() - t1;

  keys.sort((a, b) => a - b);
  console.log(
    JSON.stringify({
      canvas_nodes: N,
      open_to_all_rendered_ms: Math.round(openMs),
      keystroke_to_node_ms_median: Math.round(keys[Math.floor(keys.length / 2)]),
      keystroke_to_node_ms_max: Math.round(keys[keys.length - 1]),
      drag_30_moves_ms: Math.round(dragMs),
    }),
  );
} finally {
  await browser.close();
  await stopGateway(gw);
}
