/**
 * Handler styles and the `tasker-core/testing` helpers, without a database: class handlers,
 * defineHandler with sync and async functions, plain-object and StepResult returns, thrown
 * values, unserializable results, StepContext accessors.
 */

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  defineHandler,
  HandlerNotFoundError,
  HandlerRegistry,
  InvalidArgumentError,
  PermanentError,
  RetryableError,
  type StepContext,
  StepHandler,
  StepResult,
  Worker,
} from '../ts/index.js';
import { assertFailure, assertSuccess, buildStepContext, runHandler } from '../ts/testing.js';

class Greeter extends StepHandler<{ name: string }, { greeting: string }> {
  static override handlerName = 'test.Greeter';
  async call(ctx: StepContext<{ name: string }, { greeting: string }>) {
    return { text: `${ctx.config.greeting}, ${ctx.input.name}` };
  }
}

class Unnamed extends StepHandler {
  call(): StepResult {
    return StepResult.success('ok', { via: 'StepResult' });
  }
}

describe('StepContext', () => {
  test('exposes input, config, dependency results and attempt counters', () => {
    const ctx = buildStepContext({
      input: { order: 7 },
      config: { mode: 'fast' },
      dependencyResults: { fetch: { rows: 3 }, nothing: null },
      attempt: 2,
      maxAttempts: 2,
      stepName: 'charge',
    });
    assert.deepEqual(ctx.input, { order: 7 });
    assert.deepEqual(ctx.config, { mode: 'fast' });
    assert.deepEqual(ctx.getDependencyResult('fetch'), { rows: 3 });
    assert.equal(ctx.getDependencyResult('nothing'), null);
    assert.equal(ctx.getDependencyResult('absent'), undefined);
    assert.equal(ctx.getDependencyResult('toString'), undefined, 'no prototype leaks');
    assert.equal(ctx.isRetry, true);
    assert.equal(ctx.isLastRetry, true);
    assert.equal(ctx.stepName, 'charge');
    assert.match(ctx.taskUuid, /^[0-9a-f-]{36}$/);
    assert.equal(ctx.signal.aborted, false);
  });

  test('first attempt of three is neither a retry nor the last', () => {
    const ctx = buildStepContext();
    assert.equal(ctx.attempt, 1);
    assert.equal(ctx.maxAttempts, 3);
    assert.equal(ctx.isRetry, false);
    assert.equal(ctx.isLastRetry, false);
  });

  test('bad attempt numbers are rejected naming the field', () => {
    assert.throws(() => buildStepContext({ attempt: 0 }), (e: unknown) => e instanceof InvalidArgumentError && e.path === 'attempt');
    assert.throws(() => buildStepContext({ maxAttempts: 1.5 }), /maxAttempts/);
  });
});

describe('handler styles', () => {
  test('a class handler returning a plain object succeeds with it', async () => {
    const r = await runHandler(Greeter, { input: { name: 'Ada' }, config: { greeting: 'Hello' } });
    assertSuccess(r, { text: 'Hello, Ada' });
  });

  test('a handler instance and a class without handlerName (named by its class)', async () => {
    const registry = new HandlerRegistry([new Greeter(), Unnamed]);
    assert.deepEqual(registry.callables.sort(), ['Unnamed', 'test.Greeter']);
    const r = await runHandler(Unnamed);
    assert.equal(assertSuccess(r), 'ok');
    assert.deepEqual(r.metadata, { via: 'StepResult' });
  });

  test('defineHandler with a sync function', async () => {
    const h = defineHandler<{ n: number }>('math.Double', (ctx) => ({ value: ctx.input.n * 2 }));
    assert.equal(h.handlerName, 'math.Double');
    assertSuccess(await runHandler(h, { input: { n: 21 } }), { value: 42 });
  });

  test('defineHandler with an async function returning StepResult', async () => {
    const h = defineHandler('math.Later', async () => {
      await new Promise((r) => setTimeout(r, 1));
      return StepResult.success([1, 2, 3]);
    });
    assertSuccess(await runHandler(h), [1, 2, 3]);
  });

  test('returning nothing is success with null; scalars are results too', async () => {
    assertSuccess(await runHandler(() => undefined), null);
    assertSuccess(await runHandler(async () => 'text'), 'text');
    assertSuccess(await runHandler(() => 0), 0);
  });

  test('StepResult.failure is a failure with the given fields', async () => {
    const r = await runHandler(() => StepResult.failure({ message: 'nope', errorType: 'Upstream', retryable: false }));
    assertFailure(r, { errorType: 'Upstream', retryable: false, message: 'nope' });
  });

  test('a method named by the template runs instead of call()', async () => {
    class Multi extends StepHandler {
      static override handlerName = 'multi';
      call(): string {
        return 'call';
      }
      other(): string {
        return 'other';
      }
    }
    assertSuccess(await runHandler(Multi, { handler: { method: 'other' } }), 'other');
    assertFailure(await runHandler(Multi, { handler: { method: 'missing' } }), {
      errorType: 'handler_not_found',
      retryable: false,
      message: /no method 'missing'/,
    });
  });
});

describe('thrown values become failures', () => {
  test('PermanentError is not retryable', async () => {
    const r = await runHandler(() => {
      throw new PermanentError('bad card', { errorType: 'CardDeclined' });
    });
    const f = assertFailure(r, { errorType: 'CardDeclined', retryable: false, message: 'bad card' });
    assert.match(f.backtrace ?? '', /PermanentError: bad card/);
  });

  test('RetryableError carries retryAfter (seconds)', async () => {
    const r = await runHandler(async () => {
      throw new RetryableError('busy', { retryAfter: 2.5 });
    });
    assertFailure(r, { errorType: 'RetryableError', retryable: true, retryAfter: 2.5 });
    assert.equal(JSON.parse(r.toOutcomeJson()).retry_after, 2.5);
  });

  test('RetryableError rejects a negative retryAfter', () => {
    assert.throws(() => new RetryableError('x', { retryAfter: -1 }), RangeError);
    assert.throws(() => StepResult.failure({ message: 'x', retryAfter: Number.NaN }), /retryAfter/);
  });

  test('HandlerNotFoundError thrown by a handler is permanent handler_not_found', async () => {
    assertFailure(
      await runHandler(() => {
        throw new HandlerNotFoundError('x.Y');
      }),
      { errorType: 'handler_not_found', retryable: false, message: "no handler registered for callable 'x.Y'" },
    );
  });

  test('any other Error is retryable with its name, message and stack', async () => {
    const sync = await runHandler(() => {
      throw new SyntaxError('oops');
    });
    const f = assertFailure(sync, { errorType: 'SyntaxError', retryable: true, message: 'oops' });
    assert.match(f.backtrace ?? '', /SyntaxError: oops\n\s+at /);
    assertFailure(await runHandler(() => Promise.reject(new Error('async'))), { errorType: 'Error', message: 'async' });
  });

  test('non-Error values: strings, objects, null, undefined, symbols', async () => {
    const cases: Array<[unknown, string]> = [
      ['boom', 'boom'],
      [{ a: 1 }, '{"a":1}'],
      [null, 'null'],
      [undefined, 'undefined'],
      [Symbol('s'), 'Symbol(s)'],
      [12n, '12n'],
    ];
    for (const [thrown, shown] of cases) {
      const r = await runHandler(() => {
        throw thrown;
      });
      assertFailure(r, { errorType: 'NonErrorThrown', retryable: true, message: `handler threw a non-Error value: ${shown}` });
    }
  });
});

describe('results that are not JSON', () => {
  test('BigInt is a clear result_not_serializable failure naming the path', async () => {
    const r = await runHandler(() => ({ items: [{ amount: 1n }] }));
    assertFailure(r, { errorType: 'result_not_serializable', retryable: false, message: /result\.items\[0\]\.amount is a BigInt/ });
  });

  test('a circular structure names where the cycle closes', async () => {
    const a: Record<string, unknown> = {};
    a.b = { back: a };
    assertFailure(await runHandler(() => a), { errorType: 'result_not_serializable', message: /result\.b\.back is a circular reference/ });
  });

  test('a function or symbol as the whole result is rejected too', async () => {
    assertFailure(await runHandler(() => () => 1), { errorType: 'result_not_serializable', message: /function is not a JSON value/ });
  });

  test('failure metadata that is not JSON does not crash either: the failure stands, the metadata becomes a note', async () => {
    const r = await runHandler(() => StepResult.failure({ message: 'x', metadata: { big: 1n } }));
    assertFailure(r, { errorType: 'StepFailure', message: 'x' });
    const note = (r.error?.metadata as { metadata_dropped: { code: string; path: string; reason: string } }).metadata_dropped;
    assert.deepEqual([note.code, note.path], ['metadata_not_serializable', 'metadata.big']);
    assert.match(note.reason, /a BigInt/);
  });

  test('toJSON is honoured (Dates become strings)', async () => {
    assertSuccess(await runHandler(() => ({ at: new Date(0) })), { at: new Date(0) });
    const r = await runHandler(() => ({ at: new Date(0) }));
    assert.equal(JSON.parse(r.toOutcomeJson()).result.at, '1970-01-01T00:00:00.000Z');
  });
});

describe('registration errors name the entry at fault', () => {
  test('duplicate callables', () => {
    assert.throws(
      () => new HandlerRegistry([defineHandler('a', () => 1), defineHandler('a', () => 2)]),
      (e: unknown) => e instanceof InvalidArgumentError && e.path === 'handlers[1]' && /second handler for callable 'a'/.test(e.message),
    );
  });

  test('wrong kinds of entries', () => {
    assert.throws(() => new HandlerRegistry([42 as never]), /handlers\[0\].*StepHandler class or instance/);
    assert.throws(() => new HandlerRegistry({ x: 'nope' as never }), /handlers\["x"\]/);
    assert.throws(() => defineHandler('', () => 1), /callable/);
    assert.throws(() => defineHandler('x', 'nope' as never), /fn/);
  });

  test('worker options are validated before anything starts', () => {
    const fake = { nativeClient: () => Promise.reject(new Error('unused')) } as never;
    assert.throws(() => new Worker(fake, { queues: [], handlers: [] }), /queues/);
    assert.throws(() => new Worker(fake, { queues: ['q'], handlers: [], concurrency: 0 }), /concurrency/);
    assert.throws(() => new Worker(fake, { queues: ['q', 3 as never], handlers: [] }), /queues\[1\]/);
    assert.throws(() => new Worker({} as never, { queues: ['q'], handlers: [] }), /client/);
  });
});

describe('testing helpers', () => {
  test('assertSuccess / assertFailure fail with useful messages', async () => {
    const ok = StepResult.success({ a: 1 });
    const bad = StepResult.failure({ message: 'broken', errorType: 'E' });
    assert.throws(() => assertSuccess(bad), /expected a success, got a failure: \[E\] broken/);
    assert.throws(() => assertFailure(ok), /expected a failure/);
    assert.throws(() => assertSuccess(ok, { a: 2 }));
    assert.throws(() => assertFailure(bad, { errorType: 'F' }), /errorType: expected F, got E/);
    assert.throws(() => assertFailure(bad, { message: /nope/ }), /message/);
  });
});
