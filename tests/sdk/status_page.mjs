// Opens the status page in a real headless Chromium, the way a person would: the sign-in
// form with the token, then the dashboard. Prints what the page shows as JSON (KPI tiles,
// agent rows, whether the chart drew its lines) and writes a full-page screenshot.
//
// usage: node status_page.mjs <stack url> <status token> <screenshot.png>
import { chromium } from "playwright-core";

const [url, token, screenshot] = process.argv.slice(2);
if (!url || !token || !screenshot) {
  console.error("usage: node status_page.mjs <stack url> <status token> <screenshot.png>");
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const first = await page.goto(`${url}/status`);
  const signInStatus = first.status();
  await page.fill("input[name=token]", token);
  await Promise.all([page.waitForURL(`${url}/status`), page.click("button[type=submit]")]);
  await page.waitForSelector("[data-kpi]");
  const tiles = await page.$$eval("[data-kpi]", (nodes) =>
    nodes.map((node) => ({
      key: node.dataset.kpi,
      state: node.dataset.state,
      value: node.dataset.value === "" ? null : Number(node.dataset.value),
      display: node.querySelector(".value").textContent.trim(),
    })),
  );
  const agents = await page.$$eval("tr[data-agent]", (rows) =>
    rows.map((row) => ({ name: row.dataset.agent, state: row.dataset.state })),
  );
  const chart = await page.$$eval("#chart polyline", (lines) =>
    lines.map((line) => ({ id: line.id, points: line.getAttribute("points").split(" ").filter(Boolean).length })),
  );
  const overall = (await page.textContent("#overall")).trim();
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(JSON.stringify({ signInStatus, tiles, agents, chart, overall }));
} finally {
  await browser.close();
}
