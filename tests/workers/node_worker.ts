// A TypeScript worker process for the cross-language fixtures.
//
//   node --import tsx tests/workers/node_worker.ts --database-url URL --queue polyglot_node
//
// Runs until SIGINT/SIGTERM, then stops gracefully.

import { parseArgs } from 'node:util';

import { connect, Worker } from 'tasker-core';

import { HANDLERS } from '../handlers/node/polyglot_handlers.ts';

const { values } = parseArgs({
  options: {
    'database-url': { type: 'string' },
    queue: { type: 'string', multiple: true },
    concurrency: { type: 'string', default: '8' },
    'lease-seconds': { type: 'string', default: '30' },
  },
});
const databaseUrl = values['database-url'];
const queues = values.queue ?? [];
if (!databaseUrl || queues.length === 0) {
  console.error('--database-url and --queue are required');
  process.exit(2);
}

const client = connect({ databaseUrl });
const worker = new Worker(client, {
  queues,
  handlers: HANDLERS,
  concurrency: Number(values.concurrency),
  leaseSeconds: Number(values['lease-seconds']),
  handleSignals: true,
});
// The package is CommonJS (no top-level await), hence the promise chain.
worker
  .start()
  .then(() => console.log(`typescript worker pid ${process.pid} on ${queues.join(', ')}`))
  .catch((e: unknown) => {
    console.error(e);
    process.exit(1);
  });
