/**
 * Runs the example shop: HTTP API and worker in one process, stopped gracefully by SIGTERM.
 *
 *   node --import tsx bindings-node/examples/express-app/server.ts
 *
 * Environment: TASKER_DATABASE_URL / DATABASE_URL (default sqlite://./tasker.db), PORT (3000),
 * SHOP_NAMESPACE (node_shop), SHOP_TEMPLATES (this directory's templates/).
 */

import { join } from 'node:path';

import { connect, Worker } from 'tasker-core';
import { serveWithWorker } from 'tasker-core/express';

import { createApp } from './app.js';
import { shopHandlers } from './handlers.js';

async function main(): Promise<void> {
  const namespace = process.env.SHOP_NAMESPACE ?? 'node_shop';
  const client = connect();
  await client.registerTemplates(process.env.SHOP_TEMPLATES ?? join(__dirname, 'templates'));
  const worker = new Worker(client, { queues: [namespace], handlers: shopHandlers, concurrency: 8 });
  const running = await serveWithWorker(createApp(client, namespace), {
    worker,
    client,
    shutdownTimeoutMs: 10_000,
    onShutdown: (r) => console.log(`stopped (released ${r.released}, abandoned ${r.abandoned})`),
  });
  console.log(`shop listening on ${running.url} (database ${await client.database()})`);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
