// A TypeScript subscriber process for the cross-language events tests: every event matching
// --pattern, one JSON line each, appended to --out, until INT/TERM. With --expect N it writes
// nothing per event: after the N-th it prints {"events": N, "seconds": …} (first to N-th
// delivery) and exits (tests/e2e/bench_events.py).
//
//   node --import tsx tests/subscribers/node_subscriber.ts --database-url URL \
//     --group ts_audit --pattern order.placed --out events.jsonl

import { appendFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

import { connect, subscriber, SubscriberRunner } from 'tasker-core';

const { values } = parseArgs({
  options: {
    'database-url': { type: 'string' },
    group: { type: 'string' },
    pattern: { type: 'string', multiple: true },
    out: { type: 'string', default: '/dev/null' },
    expect: { type: 'string', default: '0' },
    'from-start': { type: 'boolean', default: false },
  },
});
const expect = Number(values.expect);
let count = 0;
let first = 0;
let finish: (seconds: number) => void = () => {};
const finished = new Promise<number>((resolve) => {
  finish = resolve;
});
const url: string | undefined = values['database-url'];
const group = values.group;
const out = values.out;
const patterns = values.pattern ?? [];
if (!url || !group || !out || patterns.length === 0) {
  console.error('--database-url, --group, --pattern and --out are required');
  process.exit(2);
}

const recorder = subscriber(
  patterns,
  (event) => {
    if (expect > 0) {
      if (count === 0) first = performance.now();
      count += 1;
      if (count === expect) finish((performance.now() - first) / 1000);
      return;
    }
    appendFileSync(
      out,
      `${JSON.stringify({ language: 'typescript', name: event.name, event_id: event.eventId, task_uuid: event.taskUuid, payload: event.payload })}\n`,
    );
  },
  { group },
);

async function main(): Promise<void> {
  const runner = new SubscriberRunner(connect({ databaseUrl: url }), recorder, {
    fromStart: values['from-start'],
    batchSize: 2000,
    pollIntervalMs: 10,
  });
  await runner.start();
  console.log(`typescript subscriber pid ${process.pid} in group ${group}`);
  const stop = async () => {
    await runner.stop();
    process.exit(0);
  };
  process.on('SIGINT', () => void stop());
  process.on('SIGTERM', () => void stop());
  if (expect > 0) {
    const seconds = await finished;
    console.log(JSON.stringify({ events: count, seconds }));
    await stop();
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
