// A TypeScript worker process for the cross-language fixtures.
//
//   node --import tsx tests/workers/node_worker.ts --database-url URL --queue polyglot_node
//     [--handlers polyglot]   # the handlers of tests/handlers/node/<NAME>_handlers.ts
//
// Runs until SIGINT/SIGTERM, then stops gracefully.

import { parseArgs } from 'node:util';

import { connect, type Handlers, Worker } from 'tasker-core';

const { values } = parseArgs({
  options: {
    'database-url': { type: 'string' },
    queue: { type: 'string', multiple: true },
    concurrency: { type: 'string', default: '8' },
    'lease-seconds': { type: 'string', default: '30' },
    handlers: { type: 'string', default: 'polyglot' },
  },
});
const databaseUrl = values['database-url'];
const queues = values.queue ?? [];
if (!databaseUrl || queues.length === 0) {
  console.error('--database-url and --queue are required');
  process.exit(2);
}

let worker: Worker | undefined;
// The package is CommonJS (no top-level await), hence the promise chain.
import(`../handlers/node/${values.handlers}_handlers.ts`)
  .then(async (handlers: { HANDLERS: Handlers }) => {
    const client = connect({ databaseUrl });
    worker = new Worker(client, {
      queues,
      handlers: handlers.HANDLERS,
      concurrency: Number(values.concurrency),
      leaseSeconds: Number(values['lease-seconds']),
      handleSignals: true,
    });
    await worker.start();
  })
  .then(() => console.log(`typescript worker pid ${process.pid} on ${queues.join(', ')}`))
  .catch((e: unknown) => {
    console.error(e);
    process.exit(1);
  });
