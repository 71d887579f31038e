// Sends events with the official `posthog-node` SDK to the local stack.
//
// Usage: node tests/sdk/posthog_node.mjs [HOST [RUN_ID]]
//        (or SDK_HOST / SDK_RUN_ID in the environment)
//
// HOST is the local stack's base URL, e.g. http://127.0.0.1:3000; RUN_ID tags every event
// (`properties.run`) so the caller can find exactly these rows. Driven by
// tests/tests/integration/sdk_clients.rs; the pinned version is in package.json, installed
// by scripts/install-sdk-clients.sh. Compression is left at the SDK's default, which gzips
// every batch (`Content-Encoding: gzip`).
//
// posthog-node never throws from capture(): failed uploads are emitted as `error` events,
// which this script counts, and any of them makes it exit non-zero.

import { randomUUID } from 'node:crypto';

const usage = 'usage: node tests/sdk/posthog_node.mjs HOST RUN_ID (or set SDK_HOST / SDK_RUN_ID)';
const host = (process.argv[2] || process.env.SDK_HOST || '').replace(/\/+$/, '');
const run = process.argv[3] || process.env.SDK_RUN_ID || randomUUID();
if (!host) {
  console.error(usage);
  process.exit(2);
}

let PostHog;
try {
  ({ PostHog } = await import('posthog-node'));
} catch (error) {
  console.error(`posthog-node is not installed (${error.message}): run ./scripts/install-sdk-clients.sh`);
  process.exit(1);
}

const errors = [];
const client = new PostHog('phc_local', {
  host,
  flushAt: 1,
  flushInterval: 0,
  // Fail fast instead of three retries three seconds apart.
  fetchRetryCount: 0,
  requestTimeout: 5000,
});
client.on('error', (error) => errors.push(error));

const distinctId = `user-${run}`;
client.capture({
  distinctId,
  event: 'sdk_test',
  properties: { run, sdk: 'posthog-node', step: 1 },
});
client.capture({
  distinctId,
  event: 'sdk_test',
  properties: { run, sdk: 'posthog-node', step: 2, plan: 'pro' },
});
client.identify({
  distinctId,
  properties: { run, email: `${distinctId}@example.com` },
});

try {
  await client.shutdown();
} catch (error) {
  errors.push(error);
}

if (errors.length > 0) {
  for (const error of errors) console.error('posthog-node error:', error?.stack || error);
  process.exit(1);
}
console.log('sent 3 events');
