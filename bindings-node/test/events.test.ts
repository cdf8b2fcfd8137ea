/**
 * Events: the catalog, domain events published by TypeScript handlers (`ctx.publish`), durable
 * subscribers (`Subscriber`, `subscriber`, `SubscriberRunner`), fast subscriptions, dead letters
 * and the operator calls, the `EventEmitter` bridge and its Express integration.
 *
 * The database may be shared with other suites (PostgreSQL): every group name is unique to this
 * run, and assertions only look at this run's tasks.
 */

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';

import express from 'express';

import {
  catalog,
  type Event,
  EventBridge,
  eventInfo,
  InvalidArgumentError,
  patternMatches,
  type StepContext,
  StepResult,
  Subscriber,
  subscriber,
  SubscriberRunner,
  type SubscriberRunnerOptions,
  Worker,
} from 'tasker-core';
import { serveWithWorker, taskerMiddleware } from 'tasker-core/express';
import { assertFailure, assertSuccess, buildEvent, buildStepContext, runHandler, runSubscriber } from 'tasker-core/testing';

import { backends, describeBackend, explain, type Harness, harness, sleep } from './helpers.js';

const unique = (name: string): string => `${name}_${randomBytes(4).toString('hex')}`;

/** Waits until `check` holds (polling), or fails with `what`. */
async function until(what: string, check: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** `step.completed:charge` for step events, the name for the others (as the core's tests write them). */
const label = (e: Event): string => (e.stepUuid === null ? e.name : `${e.name}:${String(e.payload.step_name)}`);

const handlers = {
  'NodeEvents.charge': (ctx: StepContext<{ amount: number }>) => {
    ctx.publish('payment.charged', { amount: ctx.input.amount, currency: 'EUR' });
    return StepResult.success({ charged: ctx.input.amount }, { gateway: 'test' });
  },
  'NodeEvents.note': (ctx: StepContext) => {
    ctx.publish('order.noted', { note: 'charged' });
    return { noted: true };
  },
  'NodeEvents.rogue': (ctx: StepContext) => {
    ctx.publish('payment.charged', { amount: 1 }); // declared by the template, not by this step
    return {};
  },
};

describe('event catalog', () => {
  test('catalog() lists the lifecycle events with schemas and examples', () => {
    const names = catalog().map((e) => e.name);
    for (const n of ['task.created', 'task.started', 'task.completed', 'task.failed', 'task.cancelled', 'task.resolved']) {
      assert.ok(names.includes(n), n);
    }
    for (const n of ['step.enqueued', 'step.started', 'step.completed', 'step.failed', 'step.retry_scheduled', 'step.timed_out']) {
      assert.ok(names.includes(n), n);
    }
    for (const e of catalog()) {
      assert.ok(e.description.length > 0, e.name);
      assert.equal(typeof e.payloadSchema, 'object', e.name);
      assert.equal(typeof e.example, 'object', e.name);
      assert.ok(['task', 'step', 'operator', 'dlq', 'worker'].includes(e.category), `${e.name}: ${e.category}`);
    }
    assert.equal(catalog(), catalog(), 'read once');
  });

  test('eventInfo(name) and patternMatches', () => {
    const info = eventInfo('task.completed');
    assert.equal(info?.category, 'task');
    assert.equal(info?.name, 'task.completed');
    assert.equal(eventInfo('payment.charged'), undefined);
    assert.throws(() => eventInfo(42 as unknown as string), InvalidArgumentError);
    assert.ok(patternMatches('task.*', 'task.completed'));
    assert.ok(patternMatches('*.failed', 'step.failed'));
    assert.ok(patternMatches('*', 'payment.charged'));
    assert.ok(!patternMatches('task.*', 'step.completed'));
  });
});

describe('ctx.publish', () => {
  test('adds events to the outcome metadata, keeping the other metadata', async () => {
    const ctx = buildStepContext({ input: { amount: 12 } });
    const result = await runHandler(handlers['NodeEvents.charge'], ctx);
    assertSuccess(result, { charged: 12 });
    assert.deepEqual(result.metadata, {
      gateway: 'test',
      events: [{ name: 'payment.charged', payload: { amount: 12, currency: 'EUR' } }],
    });
    assert.deepEqual(ctx.publishedEvents, [{ name: 'payment.charged', payload: { amount: 12, currency: 'EUR' } }]);
  });

  test('events travel with a failure too, and append to a handler-made events list', async () => {
    const failing = await runHandler((ctx: StepContext) => {
      ctx.publish('payment.declined', { reason: 'card' });
      throw new Error('declined');
    });
    assertFailure(failing, { message: 'declined' });
    assert.deepEqual(failing.error?.metadata, { events: [{ name: 'payment.declined', payload: { reason: 'card' } }] });
    const both = await runHandler((ctx: StepContext) => {
      ctx.publish('b.second', {});
      return StepResult.success(null, { events: [{ name: 'a.first', payload: {} }] });
    });
    assert.deepEqual(
      (both.metadata?.events as Array<{ name: string }>).map((e) => e.name),
      ['a.first', 'b.second'],
    );
  });

  test('rejects a bad name or payload at once', () => {
    const ctx = buildStepContext();
    assert.throws(() => ctx.publish('', {}), (e: unknown) => e instanceof InvalidArgumentError && e.path === 'name');
    assert.throws(() => ctx.publish('a.b', [] as never), (e: unknown) => e instanceof InvalidArgumentError && e.path === 'payload');
    assert.throws(() => ctx.publish('a.b', { n: 10n }), (e: unknown) => e instanceof InvalidArgumentError && e.path === 'payload.n');
    const payload = { n: 1 };
    ctx.publish('a.b', payload);
    payload.n = 2;
    assert.deepEqual(ctx.publishedEvents[0]?.payload, { n: 1 }, 'copied when published');
  });
});

describe('subscriber definitions', () => {
  test('group names default to the snake_cased class or function name', () => {
    const client = { nativeClient: () => Promise.reject(new Error('unused')) } as never;
    class PaymentAudit extends Subscriber {
      static override subscribeTo = ['payment.*'];
      handle(): void {}
    }
    class Named extends Subscriber {
      static override subscribeTo = ['*'];
      static override group = 'custom';
      handle(): void {}
    }
    assert.equal(new SubscriberRunner(client, PaymentAudit).group, 'payment_audit');
    assert.equal(new SubscriberRunner(client, new PaymentAudit()).group, 'payment_audit');
    assert.equal(new SubscriberRunner(client, Named).group, 'custom');
    assert.equal(new SubscriberRunner(client, PaymentAudit, { group: 'override' }).group, 'override');
    function slackNotifier(): void {}
    assert.equal(new SubscriberRunner(client, subscriber(['task.*'], slackNotifier)).group, 'slack_notifier');
    assert.equal(new SubscriberRunner(client, subscriber(['task.*'], () => {}, { group: 'g' })).group, 'g');
    assert.throws(() => new SubscriberRunner(client, subscriber(['task.*'], () => {})), /no name/);
    assert.throws(() => subscriber([], () => {}), (e: unknown) => e instanceof InvalidArgumentError && e.path === 'patterns');
    class Empty extends Subscriber {
      handle(): void {}
    }
    assert.throws(() => new SubscriberRunner(client, Empty), /subscribeTo/);
    assert.throws(() => new SubscriberRunner(client, PaymentAudit, { concurrency: 0 }), /concurrency/);
  });
});

describe('subscriber test helpers', () => {
  test('buildEvent and runSubscriber need no database', async () => {
    const seen: string[] = [];
    class Audit extends Subscriber {
      static override subscribeTo = ['task.completed', 'payment.*'];
      handleTaskCompleted(event: Event): void {
        seen.push(`routed ${event.name} ${event.category} ${String(event.stepUuid)}`);
      }
      async handle(event: Event, info: { attempt: number; group: string }): Promise<string> {
        seen.push(`handle ${event.name} ${JSON.stringify(event.payload)} ${info.attempt} ${info.group}`);
        return 'handled';
      }
    }
    const completed = buildEvent('task.completed');
    assert.deepEqual(completed.payload, eventInfo('task.completed')?.example);
    assert.equal(completed.delivery, 'durable');
    assert.equal(completed.position, 1);
    await runSubscriber(Audit, completed);
    assert.equal(await runSubscriber(new Audit(), buildEvent('payment.charged', { payload: { amount: 5 } }), { attempt: 2 }), 'handled');
    assert.deepEqual(seen, ['routed task.completed task null', 'handle payment.charged {"amount":5} 2 audit']);

    const step = buildEvent('step.failed', { namespace: 'billing', delivery: 'fast' });
    assert.equal(step.category, 'step');
    assert.equal(step.namespace, 'billing');
    assert.equal(step.position, null);
    assert.notEqual(step.stepUuid, null);
    const fn = subscriber(['payment.*'], (e) => {
      throw new Error(`refused ${e.name}`);
    }, { group: 'g' });
    // What the handler throws reaches the test, as a runner would fail the delivery with it.
    await assert.rejects(runSubscriber(fn, buildEvent('payment.refunded')), /refused payment.refunded/);
    assert.throws(() => buildEvent('payment.charged', { payload: { amount: Number.NaN } }), /payload/);
    assert.throws(() => buildEvent(''), (e: unknown) => e instanceof InvalidArgumentError && e.path === 'name');
  });
});

for (const backend of backends()) {
  describeBackend(backend, `events on ${backend.name}`, () => {
    let h: Harness;
    let worker: Worker;
    const runners: SubscriberRunner[] = [];
    const groups: string[] = [];

    const runner = (source: ConstructorParameters<typeof SubscriberRunner>[1], options: SubscriberRunnerOptions = {}): SubscriberRunner => {
      const group = options.group ?? unique('nd_events');
      groups.push(group);
      const r = new SubscriberRunner(h.client, source, { pollTimeoutMs: 200, ...options, group });
      runners.push(r);
      return r;
    };

    const checkout = (amount = 10) => h.createTask('nd_events', 'checkout', { amount });

    before(async () => {
      h = await harness(backend, ['events.yaml']);
      worker = new Worker(h.client, { queues: [h.ns('nd_events')], handlers });
      await worker.start();
    });

    after(async () => {
      await Promise.all(runners.map((r) => r.stop({ timeout: 1 })));
      await worker?.stop({ timeout: 1 });
      // Lifecycle events are written while any group exists: leave none behind.
      for (const g of groups) await h?.client.deleteEventGroup(g).catch(() => false);
      await h?.close();
    });

    test('a subscriber receives a task\'s lifecycle events in order, one at a time', async () => {
      const got: Event[] = [];
      let running = 0;
      let peak = 0;
      const r = runner(
        subscriber(['task.*', 'step.*'], async (event) => {
          running++;
          peak = Math.max(peak, running);
          await sleep(2);
          got.push(event);
          running--;
        }),
      );
      await r.start(); // joined before the task exists: its events are in the log
      const task = await checkout();
      assert.equal((await task.wait({ timeout: 30 })).state, 'complete');
      const mine = (): Event[] => got.filter((e) => e.taskUuid === task.uuid);
      await until('task.completed', () => mine().some((e) => e.name === 'task.completed'));
      assert.deepEqual(mine().map(label), [
        'task.created',
        'task.started',
        'step.enqueued:charge',
        'step.started:charge',
        'step.completed:charge',
        'step.enqueued:note',
        'step.started:note',
        'step.completed:note',
        'task.completed',
      ]);
      assert.equal(peak, 1, 'concurrency 1: strictly one event after another');
      const done = mine().find((e) => e.name === 'task.completed') as Event;
      assert.equal(done.category, 'task');
      assert.equal(done.delivery, 'durable');
      assert.equal(done.namespace, h.ns('nd_events'));
      assert.equal(done.taskName, 'checkout');
      assert.equal(done.payload.to_state, 'complete');
      assert.ok(done.occurredAt instanceof Date && !Number.isNaN(done.occurredAt.getTime()));
      assert.equal(typeof done.position, 'number');
      assert.match(done.eventId, /^[0-9a-f]{8}-[0-9a-f]{4}-7/);
      assert.equal(new Set(mine().map((e) => e.eventId)).size, mine().length, 'unique ids');
      assert.ok(r.stats.acked >= mine().length);
    });

    test('a domain event published by a TypeScript handler reaches a class subscriber', async () => {
      const got: Event[] = [];
      const others: Event[] = [];
      class Audit extends Subscriber {
        static override subscribeTo = ['payment.*', 'task.completed'];
        async handlePaymentCharged(event: Event): Promise<void> {
          got.push(event); // routed: payment.charged
        }
        async handle(event: Event): Promise<void> {
          others.push(event);
        }
      }
      const r = runner(Audit, { group: unique('audit') });
      await r.start();
      const task = await checkout(42);
      const done = await task.wait({ timeout: 30 });
      assert.equal(done.state, 'complete', explain(done));
      await until('payment.charged', () => got.some((e) => e.taskUuid === task.uuid));
      const e = got.find((x) => x.taskUuid === task.uuid) as Event;
      assert.equal(e.name, 'payment.charged');
      assert.equal(e.category, 'domain');
      assert.equal(e.delivery, 'durable');
      assert.deepEqual(e.payload, { amount: 42, currency: 'EUR' });
      assert.equal(e.stepUuid, done.step('charge')?.uuid);
      assert.ok(got.every((x) => x.name === 'payment.charged'), 'routed to handlePaymentCharged');
      await until('task.completed (handle)', () => others.some((x) => x.taskUuid === task.uuid));
      assert.ok(others.every((x) => x.name === 'task.completed'), 'only the subscribed patterns');
    });

    test('a fast domain event reaches a fast subscription of this process', async () => {
      const fast = await h.client.subscribeFast(['order.*', 'task.completed']);
      const got: Event[] = [];
      const reading = (async () => {
        for await (const e of fast) got.push(e);
      })();
      try {
        const task = await checkout();
        assert.equal((await task.wait({ timeout: 30 })).state, 'complete');
        await until('order.noted', () => got.some((e) => e.taskUuid === task.uuid && e.name === 'order.noted'));
        const noted = got.find((e) => e.taskUuid === task.uuid && e.name === 'order.noted') as Event;
        assert.equal(noted.delivery, 'fast');
        assert.equal(noted.category, 'domain');
        assert.deepEqual(noted.payload, { note: 'charged' });
        assert.equal(noted.position, null);
        await until('task.completed (fast)', () => got.some((e) => e.taskUuid === task.uuid && e.name === 'task.completed'));
        assert.equal(fast.missed, 0);
      } finally {
        fast.close();
        await reading;
      }
      assert.equal(await fast.next({ timeoutMs: 10 }), null, 'closed');
      await assert.rejects(h.client.subscribeFast([]), InvalidArgumentError);
    });

    test('publishing an undeclared event fails the step with event_not_declared', async () => {
      const task = await h.createTask('nd_events', 'rogue', {});
      const done = await task.wait({ timeout: 30 });
      assert.equal(done.state, 'error', explain(done));
      const step = done.step('rogue');
      assert.equal(step?.lastError?.errorType, 'event_not_declared');
      assert.match(step?.lastError?.message ?? '', /payment\.charged/);
      assert.equal(step?.attempts, 1, 'permanent: not retried');
    });

    test('a subscriber that throws is retried, then its event is a dead letter', async () => {
      const group = unique('flaky');
      const attempts: number[] = [];
      const taskUuids = new Set<string>();
      const r = runner(
        subscriber(['task.completed'], (event, info) => {
          if (event.taskUuid === null || !taskUuids.has(event.taskUuid)) return;
          attempts.push(info.attempt);
          throw new Error('webhook returned 500');
        }),
        { group, maxAttempts: 2, backoffMs: 20 },
      );
      await r.start();
      const task = await checkout();
      taskUuids.add(task.uuid);
      assert.equal((await task.wait({ timeout: 30 })).state, 'complete');
      let dead: Awaited<ReturnType<typeof h.client.eventDeadLetters>> = [];
      const deadline = Date.now() + 20_000;
      while (!dead.some((d) => d.taskUuid === task.uuid)) {
        assert.ok(Date.now() < deadline, `no dead letter (attempts so far: ${JSON.stringify(attempts)})`);
        await sleep(50);
        dead = await h.client.eventDeadLetters({ group });
      }
      const letter = dead.find((d) => d.taskUuid === task.uuid);
      assert.equal(letter?.name, 'task.completed');
      assert.equal(letter?.group, group);
      assert.equal(letter?.error, 'webhook returned 500');
      assert.equal(letter?.attempts, 2);
      assert.equal(letter?.event.taskUuid, task.uuid);
      assert.ok(letter?.deadAt instanceof Date);
      assert.deepEqual(attempts, [1, 2]);
      assert.ok(r.stats.failed >= 2);
      const status = (await h.client.eventGroups()).find((g) => g.group === group);
      assert.deepEqual(status?.patterns, ['task.completed']);
      assert.ok((status?.deadLetters ?? 0) >= 1);
      assert.ok((status?.liveMembers ?? 0) >= 1);
      assert.ok((await h.client.eventDeadLetters({ limit: 1 })).length <= 1);
      await assert.rejects(h.client.eventDeadLetters({ limit: 0 }), InvalidArgumentError);
    });

    test('two runners of one group split the events, none handled twice', async () => {
      const group = unique('split');
      const seen: Array<[string, Event]> = [];
      const make = (who: string): SubscriberRunner =>
        runner(
          subscriber(['task.*', 'step.*'], (event) => {
            seen.push([who, event]);
          }),
          { group, leaseMs: 1_500, concurrency: 4 },
        );
      const a = make('a');
      const b = make('b');
      await Promise.all([a.start(), b.start()]);
      // Let the group balance (a member re-checks its share every third of the lease).
      await sleep(1_500);
      const tasks = await Promise.all(Array.from({ length: 12 }, (_, i) => checkout(i)));
      const uuids = new Set(tasks.map((t) => t.uuid));
      for (const t of tasks) assert.equal((await t.wait({ timeout: 30 })).state, 'complete');
      const mine = (): Array<[string, Event]> => seen.filter(([, e]) => e.taskUuid !== null && uuids.has(e.taskUuid));
      await until('every task.completed', () => mine().filter(([, e]) => e.name === 'task.completed').length === tasks.length);
      await sleep(200); // nothing more may come
      const byId = new Map<string, string[]>();
      for (const [who, e] of mine()) byId.set(e.eventId, [...(byId.get(e.eventId) ?? []), who]);
      assert.equal(byId.size, 9 * tasks.length, 'none lost');
      assert.ok([...byId.values()].every((w) => w.length === 1), 'none handled twice');
      const fromA = mine().filter(([w]) => w === 'a').length;
      assert.ok(fromA > 0 && fromA < byId.size, `both members took part (${fromA} of ${byId.size})`);
      // In order per task, whichever member handled it.
      for (const t of tasks) {
        const names = mine()
          .filter(([, e]) => e.taskUuid === t.uuid)
          .map(([, e]) => e.name);
        assert.equal(names[0], 'task.created');
        assert.equal(names.at(-1), 'task.completed');
      }
      assert.notEqual(a.memberId, b.memberId);
    });

    test('a stopped runner records its position: the next member resumes after it', async () => {
      const group = unique('resume');
      const first: Event[] = [];
      const r1 = runner(subscriber(['task.*'], (e) => void first.push(e)), { group });
      await r1.start();
      const t1 = await checkout();
      await t1.wait({ timeout: 30 });
      await until('t1 completed', () => first.some((e) => e.taskUuid === t1.uuid && e.name === 'task.completed'));
      await r1.stop();
      assert.equal(r1.isRunning, false);
      await assert.rejects(r1.start(), /stopped/);

      const t2 = await checkout(); // nobody listens now; the group's position waits
      await t2.wait({ timeout: 30 });
      const second: Event[] = [];
      const r2 = runner(subscriber(['task.*'], (e) => void second.push(e)), { group });
      await r2.start();
      await until('t2 completed', () => second.some((e) => e.taskUuid === t2.uuid && e.name === 'task.completed'));
      assert.deepEqual(
        second.filter((e) => e.taskUuid === t2.uuid).map((e) => e.name),
        ['task.created', 'task.started', 'task.completed'],
      );
      assert.ok(!second.some((e) => e.taskUuid === t1.uuid), 'what the first member acknowledged is not delivered again');
      assert.equal(await h.client.deleteEventGroup(group), true);
      assert.equal(await h.client.deleteEventGroup(group), false);
    });

    test('client.subscribe: poll, fail (redelivered as attempt 2), ack, close', async () => {
      const group = unique('manual');
      groups.push(group);
      const sub = await h.client.subscribe(group, ['task.created'], { backoffMs: 10 });
      assert.equal(sub.group, group);
      assert.ok(sub.memberId.length > 0);
      try {
        const task = await checkout();
        const attempts: number[] = [];
        const deadline = Date.now() + 20_000;
        while (attempts.length < 2) {
          assert.ok(Date.now() < deadline, `attempts: ${JSON.stringify(attempts)}`);
          for (const d of await sub.poll({ max: 4, timeoutMs: 200 })) {
            if (d.event.taskUuid !== task.uuid) {
              sub.ack(d);
              continue;
            }
            attempts.push(d.attempt);
            assert.equal(d.event.name, 'task.created');
            if (d.attempt === 1) sub.fail(d, 'not yet');
            else sub.ack(d.deliveryId);
          }
        }
        assert.deepEqual(attempts, [1, 2]);
      } finally {
        await sub.close();
      }
      await assert.rejects(sub.poll({ timeoutMs: 10 }), /closed/);
      await assert.rejects(h.client.subscribe('', ['*']), InvalidArgumentError);
    });

    test('the event loop stays free while a runner waits', async () => {
      const r = runner(subscriber(['nothing.ever'], () => {}), { pollTimeoutMs: 10_000 });
      await r.start();
      let ticks = 0;
      await new Promise<void>((resolve) => {
        const timer = setInterval(() => {
          if (++ticks === 20) {
            clearInterval(timer);
            resolve();
          }
        }, 5);
      });
      assert.equal(ticks, 20);
      const started = Date.now();
      await r.stop();
      assert.ok(Date.now() - started < 5_000, 'stop does not wait for the 10 s poll');
    });

    test('the EventEmitter bridge emits tasker:<event>, durable and fast', async () => {
      const durable = new EventBridge(h.client, { patterns: ['task.*', 'payment.*'], group: unique('bridge'), pollTimeoutMs: 200 });
      groups.push(durable.group as string);
      const fast = new EventBridge(h.client, { patterns: ['task.completed'], delivery: 'fast' });
      const completed: Event[] = [];
      const charged: Event[] = [];
      const all: string[] = [];
      const fastCompleted: Event[] = [];
      durable.on('tasker:task.completed', (e: Event) => void completed.push(e));
      durable.on('tasker:payment.charged', async (e: Event) => {
        await sleep(1);
        charged.push(e);
      });
      durable.on('tasker:event', (e: Event) => void all.push(e.name));
      fast.on('tasker:task.completed', (e: Event) => void fastCompleted.push(e));
      await Promise.all([durable.start(), fast.start()]);
      try {
        const task = await checkout(7);
        assert.equal((await task.wait({ timeout: 30 })).state, 'complete');
        await until('bridge events', () => completed.some((e) => e.taskUuid === task.uuid) && charged.some((e) => e.taskUuid === task.uuid));
        await until('fast bridge', () => fastCompleted.some((e) => e.taskUuid === task.uuid));
        assert.equal(charged.find((e) => e.taskUuid === task.uuid)?.payload.amount, 7);
        assert.ok(all.includes('task.created') && all.includes('payment.charged'));
        assert.equal(durable.eventName('task.failed'), 'tasker:task.failed');
      } finally {
        await Promise.all([durable.stop(), fast.stop()]);
      }
    });

    test('the bridge in an Express app: req.taskerEvents, started and stopped by serveWithWorker', async () => {
      const events = new EventBridge(h.client, { patterns: ['task.completed'], group: unique('express'), pollTimeoutMs: 200 });
      groups.push(events.group as string);
      const app = express();
      app.use(express.json());
      app.use(taskerMiddleware(h.client, { events }));
      // Responds once the task completed, from the bridge (no polling of the task).
      app.post('/checkout', async (req, res) => {
        const bridge = req.taskerEvents;
        let uuid: string | undefined;
        const early: Event[] = [];
        const done = new Promise<Event>((resolve) => {
          const listener = (e: Event): void => {
            if (uuid === undefined) early.push(e);
            else if (e.taskUuid === uuid) {
              bridge.off('tasker:task.completed', listener);
              resolve(e);
            }
          };
          bridge.on('tasker:task.completed', listener);
        });
        const task = await req.tasker.createTask({
          namespace: h.ns('nd_events'),
          name: 'checkout',
          context: { amount: Number(req.body.amount) },
          initiator: 'express',
          sourceSystem: 'test',
          reason: 'bridge',
        });
        uuid = task.uuid;
        const event = await done;
        res.json({ taskUuid: task.uuid, event: event.name, state: event.payload.to_state });
      });
      const sideWorker = new Worker(h.client, { queues: [h.ns('nd_events')], handlers });
      const running = await serveWithWorker(app, {
        worker: sideWorker,
        port: 0,
        host: '127.0.0.1',
        signals: false,
        subscribers: [events],
        shutdownTimeoutMs: 2_000,
      });
      try {
        const res = await fetch(`${running.url}/checkout`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ amount: 5 }),
        });
        assert.equal(res.status, 200);
        const body = (await res.json()) as Record<string, unknown>;
        assert.equal(body.event, 'task.completed');
        assert.equal(body.state, 'complete');
      } finally {
        await running.shutdown();
      }
      assert.throws(() => taskerMiddleware(h.client, { events: {} as never }), /EventBridge/);
    });
  });
}
