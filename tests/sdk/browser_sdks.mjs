// posthog-js and mixpanel-browser, from npm, in a real headless Chromium: a page served
// here on one origin (http://localhost:<port>) loads both SDKs and points them at the API on
// another (the analytics agent, http://127.0.0.1:<port>), then identifies a visitor,
// captures events and updates people properties as a tenant's site would.
//
// Prints JSON: every request the page made to the API (method, path, status, body hash),
// failed requests, console errors and warnings, and page errors — for
// tests/tests/integration/browser_sdks.rs to judge.
//
// usage: node browser_sdks.mjs <api url> <posthog token> <mixpanel token>
import { createServer } from "node:http";
import { readFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { chromium } from "playwright-core";

const [api, posthogToken, mixpanelToken] = process.argv.slice(2);
if (!api || !posthogToken || !mixpanelToken) {
  console.error("usage: node browser_sdks.mjs <api url> <posthog token> <mixpanel token>");
  process.exit(2);
}

const here = new URL(".", import.meta.url);
const files = {
  "/posthog.js": new URL("node_modules/posthog-js/dist/array.full.no-external.js", here),
  "/mixpanel.js": new URL("node_modules/mixpanel-browser/dist/mixpanel.umd.js", here),
};
const page_html = `<!doctype html>
<html><head><meta charset="utf-8"><title>A tenant's shop</title></head>
<body><h1>Shop</h1>
<script src="/posthog.js"></script>
<script src="/mixpanel.js"></script>
<script>
  window.sdkErrors = [];
  posthog.init(${JSON.stringify(posthogToken)}, {
    api_host: ${JSON.stringify(api)},
    persistence: "localStorage",
    autocapture: false,
    capture_pageview: true,
    capture_pageleave: false,
    disable_session_recording: true,
    // posthog-js drops a driven browser's events as a bot's; PostHog's advice for
    // end-to-end tests is this switch.
    opt_out_useragent_filter: true,
    loaded: (ph) => {
      ph.identify("visitor-ph-1", { email: "visitor@example.com", plan: "free" }, { first_touch: "ad" });
      ph.capture("clicked_cta", { plan: "pro" });
      ph.setPersonProperties({ plan: "pro" }, { first_touch: "organic" });
    },
  });
  mixpanel.init(${JSON.stringify(mixpanelToken)}, {
    api_host: ${JSON.stringify(api)},
    batch_flush_interval_ms: 300,
    loaded: (mp) => {
      mp.identify("visitor-mp-1");
      mp.track("Clicked CTA", { plan: "pro" });
      mp.people.set({ plan: "pro", temporary: "yes", $email: "visitor@example.com" });
      mp.people.set_once({ first_touch: "ad" });
      mp.people.unset("temporary");
    },
  });
</script></body></html>`;

const server = createServer((request, response) => {
  const path = new URL(request.url, "http://localhost").pathname;
  if (path === "/") {
    response.writeHead(200, { "content-type": "text/html; charset=utf-8" });
    response.end(page_html);
  } else if (files[path]) {
    response.writeHead(200, { "content-type": "application/javascript" });
    response.end(readFileSync(files[path]));
  } else if (path === "/favicon.ico") {
    response.writeHead(204);
    response.end();
  } else {
    response.writeHead(404);
    response.end();
  }
});
await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
// "localhost" and "127.0.0.1" are different origins (and different ports besides).
const site = `http://localhost:${server.address().port}`;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
const requests = [];
const failed = [];
const consoleMessages = [];
const pageErrors = [];
let lastActivity = Date.now();
try {
  const page = await browser.newPage();
  page.on("console", (message) => {
    if (["error", "warning"].includes(message.type())) {
      consoleMessages.push({ type: message.type(), text: message.text(), url: message.location().url });
    }
  });
  page.on("pageerror", (error) => pageErrors.push(String(error)));
  page.on("requestfailed", (request) => {
    if (request.url().startsWith(api)) {
      failed.push({ url: request.url(), error: request.failure()?.errorText });
    }
  });
  page.on("request", (request) => {
    if (request.url().startsWith(api)) lastActivity = Date.now();
  });
  page.on("response", async (response) => {
    const request = response.request();
    if (!request.url().startsWith(api)) return;
    lastActivity = Date.now();
    const url = new URL(request.url());
    const body = request.postDataBuffer();
    requests.push({
      method: request.method(),
      path: url.pathname,
      query: url.search,
      status: response.status(),
      contentType: request.headers()["content-type"] ?? null,
      bodySha256: body ? createHash("sha256").update(body).digest("hex") : null,
    });
  });
  await page.goto(site);
  // Both SDKs batch: wait until the API has been quiet for 3 s (at most 45 s in all).
  const deadline = Date.now() + 45_000;
  while (Date.now() < deadline && Date.now() - lastActivity < 3_000) {
    await page.waitForTimeout(250);
  }
  const identities = await page.evaluate(() => ({
    posthog: window.posthog.get_distinct_id(),
    mixpanel: window.mixpanel.get_distinct_id(),
  }));
  console.log(JSON.stringify({ site, requests, failed, consoleMessages, pageErrors, identities }));
} finally {
  await browser.close();
  server.close();
}
