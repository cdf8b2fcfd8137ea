// The worker: registers the templates under templates/ and runs their steps until Ctrl-C.
//
//   npm run worker
//
// It connects to the database of config/tasker (an SQLite file, ./tasker.db), so the `tasker`
// CLI run from this directory sees the same tasks.

import * as path from 'node:path';

import { connect, Worker } from 'tasker-core';

import { HANDLERS } from './handlers';

const QUEUES = ['{{namespace}}'];

async function main(): Promise<void> {
  const client = connect();
  for (const template of await client.registerTemplates(path.join(__dirname, '..', 'templates'))) {
    console.log(`registered ${template.namespace}/${template.name}@${template.version}`);
  }
  const worker = new Worker(client, { queues: QUEUES, handlers: HANDLERS, handleSignals: true });
  await worker.start();
  console.log(`worker serving ${QUEUES.join(', ')} (Ctrl-C to stop)`);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
