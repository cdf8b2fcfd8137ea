
test('{{class_name}} handles {{event}}', async (t) => {
  const log = t.mock.method(console, 'log', () => {});
  const event = buildEvent('{{event}}');
  await runSubscriber({{class_name}}, event);
  assert.deepEqual(
    log.mock.calls.map((call) => call.arguments),
    [[`{{class_name}}: {{event}} ${event.eventId}`]],
  );
});
