// The dashboard in headless Chromium against `tasker serve` and real workers: every check is
// made in the page (what a person would see), the API only sets the scene.

import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";

import { Deployment, backend, launchBrowser, screenshotDir, seriousViolations } from "./harness.mjs";

const shots = screenshotDir();
let browser;

before(async () => {
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
});

/** Seen in the page within `ms`, polling the DOM (never a fixed sleep). */
async function eventually(page, fn, arg, ms = 15_000) {
  await page.waitForFunction(fn, arg, { timeout: ms, polling: 100 });
}

async function nodeState(page, step) {
  return page.locator(`svg.dag [data-step="${step}"]`).getAttribute("data-state");
}

/** The steps drawn in the DAG, by name. */
async function drawnSteps(page) {
  return page.locator("svg.dag [data-step]").evaluateAll((nodes) => nodes.map((n) => n.dataset.step));
}

/**
 * Marks the document so that a later check can tell it was never reloaded: every change seen
 * after this arrived over the event stream (or the page's polling), not by navigation.
 */
async function markDocument(page) {
  await page.evaluate(() => {
    window.__tasker_test_mark = true;
  });
}

async function assertNotReloaded(page) {
  assert.equal(await page.evaluate(() => window.__tasker_test_mark === true), true, "the page was not reloaded");
}

/** Confirms the open action dialog with `reason`; resolves once it has closed. */
async function confirmDialog(page, reason) {
  const dialog = page.locator("dialog");
  await dialog.waitFor();
  if (reason !== undefined) await dialog.locator("#action-reason").fill(reason);
  await dialog.locator('button[type="submit"]').click();
  await dialog.waitFor({ state: "detached" });
}

/** Opens a new failing_charge task's page on its failed step, once the task is in error. */
async function openFailedCharge(page, deployment) {
  const task = await deployment.createTask("dashboard", "failing_charge");
  await page.goto(`${deployment.url}/#/tasks/${task.task_uuid}?step=charge`);
  await eventually(page, () => document.querySelector(".task > .title-row .badge")?.textContent === "error", undefined, 30_000);
  await page.locator('[data-step-panel="charge"]').waitFor();
  return task;
}

/** The audit trail's text (the last table of the task page). */
async function auditText(page) {
  return page.locator("table").last().textContent();
}

describe(`auth off (the default on loopback), ${backend}`, () => {
  let deployment;
  let page;

  before(async () => {
    deployment = await new Deployment().start();
    deployment.startWorker("dashboard");
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    page = await context.newPage();
    page.on("pageerror", (e) => console.error("page error:", e.message));
  });
  after(async () => {
    await page?.context().close();
    await deployment?.stop();
  });

  test("the DAG's node states change live while the worker runs the steps", async () => {
    const task = await deployment.createTask("dashboard", "live_chain", { tags: ["demo"], initiator: "e2e" });
    await page.goto(`${deployment.url}/#/tasks/${task.task_uuid}`);
    await page.locator("svg.dag").waitFor();
    // The page is never reloaded: each change arrives over the event stream (or polling).
    const seen = { extract: new Set(), transform: new Set(), load: new Set() };
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      for (const step of Object.keys(seen)) seen[step].add(await nodeState(page, step));
      if ((await nodeState(page, "load")) === "complete") break;
      await page.waitForTimeout(100);
    }
    assert.equal(await nodeState(page, "load"), "complete", "load completes, seen in the page");
    for (const step of ["transform", "load"]) {
      assert.ok(seen[step].has("in_progress"), `${step} was seen running: ${[...seen[step]]}`);
      assert.ok([...seen[step]].some((s) => s === "pending" || s === "enqueued"), `${step} was seen waiting: ${[...seen[step]]}`);
    }
    await eventually(page, () => document.querySelector(".title-row .badge")?.textContent === "complete");
    assert.equal(await page.locator(".timeline .tl-bar").count(), 3, "one attempt bar per step on the timeline");
    await page.screenshot({ path: join(shots, "task-detail.png"), fullPage: true });
  });

  test("a failing step's error and backtrace are shown, and completing it by hand unblocks the task", async () => {
    const task = await deployment.createTask("dashboard", "failing_charge");
    await page.goto(`${deployment.url}/#/tasks/${task.task_uuid}`);
    await eventually(page, () => document.querySelector('svg.dag [data-step="charge"]')?.dataset.state === "error", undefined, 30_000);
    // By keyboard: focus the node and press Enter.
    await page.locator('svg.dag [data-step="charge"]').focus();
    await page.keyboard.press("Enter");
    const panel = page.locator('[data-step-panel="charge"]');
    await panel.waitFor();
    assert.equal(await panel.locator(".error-type").first().textContent(), "GatewayDown");
    assert.match(await panel.locator(".error-message").first().textContent(), /payment gateway refused/);
    const backtrace = await panel.locator("pre.backtrace").first().textContent();
    assert.ok(backtrace.split("\n").length > 3, `a multi-line backtrace: ${backtrace.slice(0, 200)}`);
    await page.screenshot({ path: join(shots, "step-error.png"), fullPage: true });

    await panel.locator('[data-action="complete_manually"]').click();
    const dialog = page.locator("dialog");
    await dialog.waitFor();
    const json = dialog.locator("#action-json");
    await json.fill("{not json");
    assert.equal(await dialog.locator('button[type="submit"]').isDisabled(), true, "invalid JSON cannot be sent");
    assert.match(await dialog.locator("#action-json-status").textContent(), /Not valid JSON/);
    await json.fill('{"charge_id": "manual-42"}');
    await dialog.locator("#action-reason").fill("charged by phone");
    await page.screenshot({ path: join(shots, "complete-manually.png") });
    await dialog.locator('button[type="submit"]').click();
    await eventually(page, () => document.querySelector(".title-row .badge")?.textContent === "complete", undefined, 30_000);
    assert.equal(await nodeState(page, "charge"), "complete");
    assert.equal(await nodeState(page, "ship"), "complete", "the blocked step ran after the manual completion");
    assert.ok((await page.locator("table").last().textContent()).includes("charged by phone"), "the reason is in the audit trail");
  });

  test("filters and cursor pagination over 1,000 tasks", async () => {
    const total = 1000;
    const create = async (i) =>
      deployment.createTask("bulk", "idle", { tags: [i % 2 ? "odd" : "even"], idempotency_key: `bulk-${i}` });
    for (let i = 0; i < total; i += 20) await Promise.all(Array.from({ length: 20 }, (_, j) => create(i + j)));

    await page.goto(`${deployment.url}/#/tasks?namespace=bulk&tag=even`);
    await page.locator("tr[data-task]").first().waitFor();
    const pages = [];
    for (;;) {
      await page.locator("[data-testid=page-number]").waitFor();
      const rows = await page.locator("tr[data-task]").evaluateAll((trs) => trs.map((tr) => tr.dataset.task));
      pages.push(rows);
      const next = page.locator("[data-testid=next-page]");
      if (await next.isDisabled()) break;
      const label = await page.locator("[data-testid=page-number]").textContent();
      await next.click();
      await eventually(page, (l) => document.querySelector("[data-testid=page-number]")?.textContent !== l, label);
    }
    const all = pages.flat();
    assert.equal(pages.length, 10, "500 even tasks in pages of 50");
    assert.equal(all.length, 500);
    assert.equal(new Set(all).size, 500, "no task twice across pages");
    // Back one page: the same tasks as before.
    await page.locator("[data-testid=prev-page]").click();
    await eventually(page, () => document.querySelector("[data-testid=page-number]")?.textContent === "Page 9");
    assert.deepEqual(await page.locator("tr[data-task]").evaluateAll((trs) => trs.map((tr) => tr.dataset.task)), pages[8]);

    // The form: a state filter that matches nothing, then search by idempotency key.
    await page.goto(`${deployment.url}/#/tasks`);
    await page.locator("#f-namespace").fill("bulk");
    await page.locator("#f-state").selectOption("complete");
    await page.locator("form[role=search] button[type=submit]").click();
    await page.locator("text=No task matches.").waitFor();
    await page.goto(`${deployment.url}/#/tasks`);
    await page.locator("#f-search").fill("bulk-777");
    await page.locator("#f-search").press("Enter");
    await eventually(page, () => document.querySelectorAll("tr[data-task]").length === 1);
    const uuid = await page.locator("tr[data-task]").getAttribute("data-task");
    await page.locator("#f-search").fill(uuid);
    await page.locator("#f-search").press("Enter");
    await page.locator("svg.dag").waitFor();
    assert.ok(page.url().endsWith(`#/tasks/${uuid}`), "a uuid opens the task");
    await page.goto(`${deployment.url}/#/tasks?namespace=bulk`);
    await page.locator("tr[data-task]").first().waitFor();
    await page.screenshot({ path: join(shots, "tasks.png"), fullPage: false });
  });

  test("a decision's and a batch's created steps appear in the DAG while the task runs", async () => {
    const task = await deployment.createTask("dashboard", "live_branching", { context: { items: 3, batch_size: 1 } });
    await page.goto(`${deployment.url}/#/tasks/${task.task_uuid}`);
    await page.locator('svg.dag [data-step="route"]').waitFor();
    await markDocument(page);
    // The decision sleeps 1.5 s before it chooses: its branches do not exist yet.
    const before = await drawnSteps(page);
    assert.ok(!before.includes("fast_path"), `no branch before the decision: ${before}`);
    assert.ok(!before.some((s) => s.startsWith("work_")), `no batch worker before the batch is planned: ${before}`);
    await eventually(page, () => !!document.querySelector('svg.dag [data-step="fast_path"]'), undefined, 30_000);
    const chosen = await drawnSteps(page);
    assert.ok(!chosen.some((s) => s.startsWith("work_")), `the batch is planned after the branch: ${chosen}`);
    await eventually(
      page,
      () => ["work_001", "work_002", "work_003"].every((n) => document.querySelector(`svg.dag [data-step="${n}"]`)),
      undefined,
      30_000,
    );
    await eventually(page, () => document.querySelector(".task > .title-row .badge")?.textContent === "complete", undefined, 30_000);
    await assertNotReloaded(page);
    const after = await drawnSteps(page);
    assert.ok(!after.includes("slow_path"), `the branch not chosen is never created: ${after}`);
    for (const step of ["route", "fast_path", "plan", "work_001", "work_002", "work_003", "finish"]) {
      assert.equal(await nodeState(page, step), "complete", `${step} complete in the page`);
    }
    // Each created step hangs from the step that created it.
    const edge = await page.locator("svg.dag").evaluate((svg) => svg.querySelectorAll("[data-step]").length);
    assert.ok(edge >= 8, `route, fast_path, collect, plan, 3 workers and finish drawn (${edge})`);
    await page.screenshot({ path: join(shots, "task-created-steps.png"), fullPage: true });
  });

  test("retry task from the page: the failed step runs again, seen live", async () => {
    await openFailedCharge(page, deployment);
    await markDocument(page);
    assert.equal(await page.locator(".task > .title-row .actions button", { hasText: "Cancel task" }).count(), 0, "a finished task cannot be cancelled");
    await page.locator(".task > .title-row .actions button", { hasText: "Retry task" }).click();
    await confirmDialog(page, "the gateway is back");
    // The worker runs the reset step again (and it fails again): a second attempt in the page.
    await eventually(page, () => document.querySelector('svg.dag [data-step="charge"] .sublabel')?.textContent.includes("×2"), undefined, 30_000);
    await eventually(page, () => document.querySelector(".task > .title-row .badge")?.textContent === "error", undefined, 30_000);
    await assertNotReloaded(page);
    assert.ok((await auditText(page)).includes("the gateway is back"), "the reason is in the audit trail");
  });

  test("reset a step from its panel: it runs again, seen live", async () => {
    await openFailedCharge(page, deployment);
    await markDocument(page);
    await page.locator('[data-step-panel="charge"] [data-action="reset_for_retry"]').click();
    await confirmDialog(page, "try once more");
    await eventually(page, () => document.querySelector('svg.dag [data-step="charge"] .sublabel')?.textContent.includes("×2"), undefined, 30_000);
    await eventually(page, () => document.querySelector('[data-step-panel="charge"]')?.querySelectorAll(".step-error").length >= 2, undefined, 30_000);
    await assertNotReloaded(page);
    assert.equal(await nodeState(page, "ship"), "pending", "the step after it still waits");
  });

  test("resolve a step manually: its dependents run and the task completes, seen live", async () => {
    await openFailedCharge(page, deployment);
    await markDocument(page);
    await page.locator('[data-step-panel="charge"] [data-action="resolve_manually"]').click();
    await confirmDialog(page, "refunded outside Tasker");
    await eventually(page, () => document.querySelector('svg.dag [data-step="charge"]')?.dataset.state === "resolved_manually");
    await eventually(page, () => document.querySelector('svg.dag [data-step="ship"]')?.dataset.state === "complete", undefined, 30_000);
    await eventually(page, () => document.querySelector(".task > .title-row .badge")?.textContent === "complete", undefined, 30_000);
    await assertNotReloaded(page);
    assert.ok((await auditText(page)).includes("refunded outside Tasker"), "the reason is in the audit trail");
  });

  test("cancel a step from its panel: the page shows it cancelled", async () => {
    const task = await openFailedCharge(page, deployment);
    // A failed step cannot be cancelled (only reset, resolved or completed): no such button.
    assert.deepEqual(
      await page.locator('[data-step-panel="charge"] [data-action]').evaluateAll((bs) => bs.map((b) => b.dataset.action)),
      ["reset_for_retry", "resolve_manually", "complete_manually"],
    );
    // The step below it waits (pending) and can be.
    await page.goto(`${deployment.url}/#/tasks/${task.task_uuid}?step=ship`);
    await page.locator('[data-step-panel="ship"]').waitFor();
    await markDocument(page);
    await page.locator('[data-step-panel="ship"] [data-action="cancel"]').click();
    await confirmDialog(page, "not needed any more");
    await eventually(page, () => document.querySelector('svg.dag [data-step="ship"]')?.dataset.state === "cancelled");
    await eventually(page, () => document.querySelector('[data-step-panel="ship"] .title-row .badge')?.textContent === "cancelled");
    await assertNotReloaded(page);
    assert.equal(await page.locator('[data-step-panel="ship"] [data-action]').count(), 0, "a cancelled step offers no more actions");
    assert.ok((await auditText(page)).includes("not needed any more"), "the reason is in the audit trail");
  });

  test("cancel a task from its page: its open step is cancelled, seen live", async () => {
    // The idle template's step waits on a queue nobody serves, so the task stays open.
    const task = await deployment.createTask("bulk", "idle", { tags: ["to-cancel"] });
    await page.goto(`${deployment.url}/#/tasks/${task.task_uuid}`);
    await page.locator('svg.dag [data-step="wait"]').waitFor();
    await markDocument(page);
    await page.locator(".task > .title-row .actions button", { hasText: "Cancel task" }).click();
    // The reason is optional here: confirm with none.
    await confirmDialog(page);
    await eventually(page, () => document.querySelector(".task > .title-row .badge")?.textContent === "cancelled");
    await eventually(page, () => document.querySelector('svg.dag [data-step="wait"]')?.dataset.state === "cancelled");
    await assertNotReloaded(page);
    assert.equal(await page.locator(".task > .title-row .actions button").count(), 0, "a cancelled task offers no actions");
  });

  test("the DLQ entry's status form: a new status and a note, shown on the entry", async () => {
    const task = await deployment.createTask("dashboard", "failing_charge");
    let entry = null;
    for (let i = 0; i < 150 && !entry; i++) {
      const queue = await deployment.api("/v1/dlq/investigation-queue?limit=100");
      entry = queue.find((q) => q.entry.task_uuid === task.task_uuid)?.entry ?? null;
      if (!entry) await new Promise((r) => setTimeout(r, 200));
    }
    assert.ok(entry, "the failed task has a DLQ entry");
    await page.goto(`${deployment.url}/#/dlq/${entry.entry_uuid}`);
    await page.locator("#dlq-status").waitFor();
    assert.equal(await page.locator("main .title-row .badge").textContent(), "pending");
    // A note is required: saving without one sends nothing.
    await page.locator("#dlq-status").selectOption("investigating");
    await page.locator("main form button[type=submit]").click();
    assert.equal(await page.evaluate(() => document.activeElement?.id), "dlq-note", "an empty note is refused");
    await page.locator("#dlq-note").fill("looking at the gateway logs");
    await page.locator("main form button[type=submit]").click();
    await eventually(page, () => document.querySelector("main .title-row .badge")?.textContent === "investigating");
    await eventually(page, () => document.querySelector("ol.notes")?.textContent.includes("looking at the gateway logs"));
    // A second update closes it: the page shows who resolved it.
    await page.locator("#dlq-status").selectOption("manually_resolved");
    await page.locator("#dlq-note").fill("charged by hand");
    await page.locator("main form button[type=submit]").click();
    await eventually(page, () => document.querySelector("main .title-row .badge")?.textContent === "manually resolved" || document.querySelector("main .title-row .badge")?.textContent === "manually_resolved");
    await eventually(page, () => document.querySelectorAll("ol.notes li").length === 2);
    assert.doesNotMatch(await page.locator("main").textContent(), /Resolved—/);
    const saved = await deployment.api(`/v1/dlq/entry/${entry.entry_uuid}`);
    assert.equal(saved.status, "manually_resolved");
    assert.deepEqual(saved.notes.map((n) => n.text), ["looking at the gateway logs", "charged by hand"]);
    if (backend === "sqlite") await page.screenshot({ path: join(shots, "dlq-entry-updated.png"), fullPage: true });
  });

  test("every page: 0 serious or critical accessibility violations, readable at phone size, screenshots", async () => {
    await deployment.createTask("dashboard", "failing_charge");
    const pages = {
      overview: "#/",
      tasks: "#/tasks",
      dlq: "#/dlq",
      templates: "#/templates",
      template: "#/templates/dashboard/branching/1.0.0",
      workers: "#/workers",
    };
    const tasks = await deployment.api("/v1/tasks?namespace=dashboard&name=live_chain&limit=1");
    pages.task = `#/tasks/${tasks.tasks[0].task_uuid}?step=transform`;
    // A DLQ entry appears once the failing task errors.
    let entry = null;
    for (let i = 0; i < 100 && !entry; i++) {
      const queue = await deployment.api("/v1/dlq/investigation-queue?limit=1");
      entry = queue[0]?.entry ?? null;
      if (!entry) await new Promise((r) => setTimeout(r, 200));
    }
    assert.ok(entry, "the failed task is in the DLQ");
    pages["dlq-entry"] = `#/dlq/${entry.entry_uuid}`;
    for (const [name, hash] of Object.entries(pages)) {
      await page.setViewportSize({ width: 1280, height: 900 });
      await page.goto(`${deployment.url}/${hash}`);
      await page.locator("main h1").first().waitFor();
      // (Not "networkidle": the event stream keeps a request open.)
      await page.waitForTimeout(500);
      // A toast left by an earlier test's action (it fades by itself) is not part of the page.
      await page.evaluate(() => document.getElementById("toast")?.classList.remove("show"));
      const violations = await seriousViolations(page);
      assert.deepEqual(violations, [], `${name}: ${JSON.stringify(violations, null, 1)}`);
      if (!["task"].includes(name)) await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
      await page.setViewportSize({ width: 390, height: 844 });
      await page.waitForTimeout(200);
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(overflow <= 1, `${name} fits a phone's width (overflows by ${overflow}px)`);
      const violationsPhone = await seriousViolations(page);
      assert.deepEqual(violationsPhone, [], `${name} at phone size: ${JSON.stringify(violationsPhone, null, 1)}`);
      if (name === "overview" || name === "task") await page.screenshot({ path: join(shots, `${name}-phone.png`), fullPage: true });
    }
    await page.setViewportSize({ width: 1280, height: 900 });
  });
});

describe(`auth on, ${backend}`, () => {
  const config = `
[auth]
enabled = true
[[auth.api_keys]]
subject = "operator"
key = "operator-key"
permissions = ["*"]
[[auth.api_keys]]
subject = "viewer"
key = "viewer-key"
permissions = ["tasks:read", "tasks:list", "steps:read", "templates:read", "dlq:read", "dlq:stats", "workers:read", "events:read"]
`;
  let deployment;
  let context;

  before(async () => {
    deployment = await new Deployment({ apiConfig: config }).start();
    context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  });
  after(async () => {
    await context?.close();
    await deployment?.stop();
  });

  async function signIn(page, key) {
    await page.locator("#secret").waitFor();
    await page.locator("#secret").fill(key);
    await page.locator("form.signin button[type=submit]").click();
  }

  test("sign-in is required, a read-only key sees no action buttons, the operator's does", async () => {
    const task = await deployment.createTask("dashboard", "failing_charge", {}, "operator-key");
    const page = await context.newPage();
    await page.goto(`${deployment.url}/#/tasks/${task.task_uuid}`);
    await page.waitForURL(/#\/signin$/);
    assert.equal(await page.locator("svg.dag").count(), 0, "nothing shown before signing in");
    assert.deepEqual(await seriousViolations(page), []);
    await page.screenshot({ path: join(shots, "sign-in.png") });

    await signIn(page, "wrong-key");
    await page.locator("text=That credential was not accepted.").waitFor();

    await signIn(page, "viewer-key");
    await page.waitForURL(/#\/$/);
    await page.locator("#who", { hasText: "viewer" }).waitFor();
    assert.ok(!page.url().includes("viewer-key"), "the key is not in the URL");
    await page.goto(`${deployment.url}/#/tasks/${task.task_uuid}?step=charge`);
    await page.locator('[data-step-panel="charge"]').waitFor();
    assert.equal(await page.locator("[data-action]").count(), 0, "no step actions for a read-only key");
    assert.equal(await page.locator(".title-row .actions button").count(), 0, "no task actions for a read-only key");
    assert.match(await page.locator("main").textContent(), /lacks tasks:context_read/);

    await page.locator("#sign-out").click();
    await page.waitForURL(/#\/signin$/);
    await signIn(page, "operator-key");
    await page.waitForURL(/#\/$/);
    await page.goto(`${deployment.url}/#/tasks/${task.task_uuid}?step=charge`);
    await page.locator('[data-step-panel="charge"]').waitFor();
    // No worker runs here: the step waits (pending), so it can be resolved, completed or cancelled.
    assert.deepEqual(
      await page.locator("[data-action]").evaluateAll((bs) => bs.map((b) => b.dataset.action)),
      ["resolve_manually", "complete_manually", "cancel"],
      "the operator sees the step actions",
    );

    // A credential that stops working sends the page back to sign-in.
    await page.evaluate(() => sessionStorage.setItem("tasker.credential", JSON.stringify({ kind: "key", value: "revoked" })));
    await page.goto(`${deployment.url}/#/workers`);
    await page.waitForURL(/#\/signin$/);
    await page.close();
  });
});
