// The Tasker dashboard: a hash-routed single page over the REST API. No framework and no
// build step: the files served are the files in this folder (see ../README.md for why).

import { api, ApiError, clearCredential, LiveFeed, setCredential } from "./api.js";
import { renderDag } from "./dag.js";
import { ago, badge, clear, duration, h, shortUuid, time } from "./dom.js";
import { jsonViewer, toYaml } from "./json.js";

const TASK_STATES = [
  "pending", "initializing", "enqueuing_steps", "steps_in_process", "evaluating_results",
  "waiting_for_dependencies", "waiting_for_retry", "blocked_by_failures", "complete", "error",
  "cancelled", "resolved_manually",
];
const FINISHED_TASK_STATES = new Set(["complete", "error", "cancelled", "resolved_manually"]);
const OPEN_STEP_STATES = ["pending", "enqueued", "in_progress", "enqueued_for_orchestration", "waiting_for_retry"];
/** The step states each operator action may start from (as the engine checks them). */
const STEP_ACTION_STATES = {
  reset_for_retry: new Set(["error", "waiting_for_retry", "enqueued"]),
  resolve_manually: new Set(["error", ...OPEN_STEP_STATES]),
  complete_manually: new Set(["error", ...OPEN_STEP_STATES]),
  cancel: new Set(OPEN_STEP_STATES),
};
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const main = document.getElementById("main");
const feed = new LiveFeed();
/** Who is signed in: {subject, method, permissions, auth_enabled}. */
let session = null;
/** The page on screen: {refresh(), wants(name, event)}; replaced on every navigation. */
let page = null;
let pollTimer = null;
let refreshTimer = null;

// ---- permissions -------------------------------------------------------------------------

/** The server's rule (auth::grants): exact, `*`, or `resource:*`. */
function can(permission) {
  if (!session) return false;
  return session.permissions.some(
    (g) => g === "*" || g === permission || (g.endsWith(":*") && permission.startsWith(g.slice(0, -1))),
  );
}

// ---- small UI pieces -------------------------------------------------------------------

function toast(message, kind = "info") {
  const box = document.getElementById("toast");
  box.textContent = message;
  box.className = `toast show ${kind}`;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => {
    box.className = "toast";
    box.textContent = "";
  }, 5000);
}

function errorBox(err) {
  const text = err instanceof ApiError ? `${err.message}${err.code ? ` (${err.code})` : ""}` : String(err?.message ?? err);
  return h("p", { class: "error-box", role: "alert" }, text);
}

function section(title, ...children) {
  return h("section", { class: "card" }, h("h2", {}, title), ...children);
}

function table(headers, rows, { caption, empty = "Nothing here." } = {}) {
  if (rows.length === 0) return h("p", { class: "empty" }, empty);
  // A region that scrolls sideways on a narrow screen must be reachable by keyboard.
  return h(
    "div",
    { class: "table-wrap", tabindex: "0", role: "region", "aria-label": caption ?? "Table" },
    h(
      "table",
      {},
      caption ? h("caption", { class: "visually-hidden" }, caption) : null,
      h("thead", {}, h("tr", {}, headers.map((x) => h("th", { scope: "col" }, x)))),
      h("tbody", {}, rows),
    ),
  );
}

function definitionList(pairs) {
  return h(
    "dl",
    { class: "facts" },
    pairs.filter(([, v]) => v !== undefined).flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v ?? "—")]),
  );
}

/**
 * Asks for confirmation and a reason in a modal <dialog> (which keeps focus inside it and
 * closes on Escape). `editor` adds a JSON editor that must parse before the action is allowed.
 * Resolves to {reason, json} or null when cancelled.
 */
function confirmAction({ title, description, confirmLabel, editor = false, reasonRequired = true, danger = false }) {
  return new Promise((resolve) => {
    const reason = h("textarea", { id: "action-reason", rows: 2, required: reasonRequired ? true : undefined });
    const json = editor ? h("textarea", { id: "action-json", rows: 8, class: "mono", spellcheck: "false" }, "{}") : null;
    const jsonStatus = editor ? h("p", { id: "action-json-status", class: "hint", "aria-live": "polite" }, "Valid JSON.") : null;
    const submit = h("button", { type: "submit", class: danger ? "danger" : "primary" }, confirmLabel);
    const validate = () => {
      if (!json) return true;
      try {
        JSON.parse(json.value);
        jsonStatus.textContent = "Valid JSON.";
        jsonStatus.className = "hint ok";
        submit.disabled = false;
        json.setAttribute("aria-invalid", "false");
        return true;
      } catch (e) {
        jsonStatus.textContent = `Not valid JSON: ${e.message}`;
        jsonStatus.className = "hint bad";
        submit.disabled = true;
        json.setAttribute("aria-invalid", "true");
        return false;
      }
    };
    json?.addEventListener("input", validate);
    const form = h(
      "form",
      { method: "dialog", class: "dialog-form" },
      h("h2", { id: "dialog-title" }, title),
      h("p", {}, description),
      editor
        ? h("div", { class: "field" }, h("label", { for: "action-json" }, "Result (JSON), given to the step's dependents"), json, jsonStatus)
        : null,
      h("div", { class: "field" }, h("label", { for: "action-reason" }, `Reason${reasonRequired ? "" : " (optional)"}`), reason),
      h(
        "div",
        { class: "buttons" },
        h("button", { type: "button", value: "cancel", onclick: () => dialog.close("cancel") }, "Cancel"),
        submit,
      ),
    );
    const dialog = h("dialog", { "aria-labelledby": "dialog-title" }, form);
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      if (!validate() || (reasonRequired && !reason.value.trim())) {
        reason.focus();
        return;
      }
      const value = { reason: reason.value.trim(), json: json ? JSON.parse(json.value) : undefined };
      dialog.close("ok");
      resolve(value);
    });
    dialog.addEventListener("close", () => {
      dialog.remove();
      if (dialog.returnValue !== "ok") resolve(null);
    });
    document.body.append(dialog);
    dialog.showModal();
    (editor ? json : reason).focus();
  });
}

/**
 * Refreshes overlap (a poll, an event, a click); only the last one started may render, so an
 * older answer arriving late never replaces a newer one.
 */
function latestOnly() {
  let started = 0;
  return { begin: () => ++started, current: (n) => n === started };
}

async function runAction(label, fn) {
  try {
    await fn();
    toast(`${label}: done.`, "ok");
  } catch (err) {
    toast(`${label} failed: ${err.message}`, "bad");
  }
  await page?.refresh();
}

// ---- routing -------------------------------------------------------------------------------

function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/";
  const [path, query = ""] = raw.split("?");
  return { parts: path.split("/").filter(Boolean).map(decodeURIComponent), query: new URLSearchParams(query) };
}

const routes = {
  "": overviewPage,
  tasks: (parts, query) => (parts[1] ? taskPage(parts[1], query) : tasksPage(query)),
  dlq: (parts) => (parts[1] ? dlqEntryPage(parts[1]) : dlqPage()),
  templates: (parts) => (parts.length >= 4 ? templatePage(parts[1], parts[2], parts[3]) : templatesPage()),
  workers: workersPage,
  signin: signInPage,
};

async function navigate() {
  clearInterval(pollTimer);
  clearTimeout(refreshTimer);
  page = null;
  const { parts, query } = parseHash();
  if (!session && parts[0] !== "signin") {
    if (!(await loadSession())) return;
  }
  const name = parts[0] ?? "";
  for (const a of document.querySelectorAll("nav a")) {
    const active = a.dataset.section === (name || "overview");
    if (active) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const build = routes[name];
  clear(main);
  if (!build) {
    main.append(h("h1", {}, "Not found"), h("p", {}, "No such page. ", h("a", { href: "#/" }, "Back to the overview.")));
    return;
  }
  page = build(parts, query) ?? null;
  if (page) {
    await page.refresh();
    schedulePolling();
  }
}

/** Polls the page: slowly while the live stream is up (a safety net), quickly when it is not. */
function schedulePolling() {
  clearInterval(pollTimer);
  if (!page || page.poll === false) return;
  pollTimer = setInterval(() => page?.refresh(), feed.connected ? 5000 : 1000);
}

feed.onEvent((name, event) => {
  if (!page || !page.wants?.(name, event)) return;
  clearTimeout(refreshTimer);
  // Coalesces a burst of events (a step's claim, start and completion) into one reload.
  refreshTimer = setTimeout(() => page?.refresh(), 120);
});
feed.onStatus((connected) => {
  const status = document.getElementById("live-status");
  status.textContent = connected ? "● live" : "○ polling";
  status.className = `live-status ${connected ? "on" : "off"}`;
  status.title = connected ? "Live updates over Server-Sent Events" : "The event stream is not connected; refreshing by polling";
  schedulePolling();
});

/** Finds out who we are; false (and the sign-in page) when the server wants a credential. */
async function loadSession() {
  try {
    session = await api("/v1/auth/whoami");
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      location.hash = "#/signin";
      return false;
    }
    clear(main).append(h("h1", {}, "Tasker"), errorBox(err));
    return false;
  }
  document.getElementById("who").textContent = session.auth_enabled ? `signed in as ${session.subject}` : "auth off";
  document.getElementById("sign-out").hidden = !session.auth_enabled;
  if (can("events:read")) feed.restart();
  else feed.stop();
  return true;
}

window.addEventListener("tasker:unauthenticated", () => {
  session = null;
  feed.stop();
  if (parseHash().parts[0] !== "signin") location.hash = "#/signin";
});
document.getElementById("sign-out").addEventListener("click", () => {
  clearCredential();
  session = null;
  feed.stop();
  document.getElementById("who").textContent = "";
  document.getElementById("sign-out").hidden = true;
  location.hash = "#/signin";
});
window.addEventListener("hashchange", navigate);
navigate();

function setTitle(text) {
  document.title = `${text} · Tasker`;
}

// ---- sign-in -------------------------------------------------------------------------------

function signInPage() {
  setTitle("Sign in");
  const secret = h("input", { id: "secret", type: "password", autocomplete: "off", required: true });
  const kindKey = h("input", { type: "radio", name: "kind", id: "kind-key", value: "key", checked: true });
  const kindToken = h("input", { type: "radio", name: "kind", id: "kind-token", value: "token" });
  const message = h("p", { class: "error-box", role: "alert", hidden: true });
  const form = h(
    "form",
    { class: "card signin", "aria-labelledby": "signin-title" },
    h("h1", { id: "signin-title" }, "Sign in"),
    h("p", {}, "This server wants a credential. It is kept in this tab's session storage only."),
    h(
      "fieldset",
      {},
      h("legend", {}, "Credential"),
      h("div", { class: "radio" }, kindKey, h("label", { for: "kind-key" }, "API key")),
      h("div", { class: "radio" }, kindToken, h("label", { for: "kind-token" }, "Token (JWT)")),
    ),
    h("div", { class: "field" }, h("label", { for: "secret" }, "Key or token"), secret),
    message,
    h("div", { class: "buttons" }, h("button", { type: "submit", class: "primary" }, "Sign in")),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    setCredential(kindToken.checked ? "token" : "key", secret.value.trim());
    secret.value = "";
    session = null;
    try {
      session = await api("/v1/auth/whoami");
    } catch (err) {
      message.hidden = false;
      message.textContent = err instanceof ApiError && err.status === 401 ? "That credential was not accepted." : err.message;
      return;
    }
    session = null; // navigate() loads it again and starts the live feed with it
    location.hash = "#/";
  });
  main.append(form);
  secret.focus();
  return null;
}

// ---- overview ------------------------------------------------------------------------------

function overviewPage() {
  setTitle("Overview");
  const body = h("div", { class: "grid" });
  main.append(h("h1", {}, "Overview"), body);
  return {
    wants: (name) => name.startsWith("task.") || name.startsWith("worker.") || name.startsWith("step."),
    refresh: async () => {
      const [stats, workers, dlq] = await Promise.allSettled([
        api("/v1/stats"),
        can("workers:read") ? api("/v1/workers") : Promise.resolve(null),
        can("dlq:stats") ? api("/v1/dlq/stats") : Promise.resolve(null),
      ]);
      const cards = [];
      if (stats.status === "fulfilled") {
        const s = stats.value;
        const total = Object.values(s.tasks_by_state).reduce((a, b) => a + b, 0);
        cards.push(
          h(
            "section",
            { class: "card tiles", "aria-label": "Totals" },
            tile("Tasks", total),
            tile("Completed, last hour", s.completed_last_hour),
            tile("Throughput", `${s.completed_per_minute.toFixed(1)}/min`, "tasks completed per minute over the last 5 minutes"),
            workers.status === "fulfilled" && workers.value ? tile("Live workers", workers.value.filter((w) => w.live).length) : null,
            dlq.status === "fulfilled" && dlq.value ? tile("Open DLQ entries", dlq.value.open, null, "#/dlq") : null,
          ),
          section(
            "Tasks by state",
            h(
              "ul",
              { class: "state-counts" },
              TASK_STATES.filter((st) => s.tasks_by_state[st]).map((st) =>
                h("li", {}, h("a", { href: `#/tasks?state=${st}` }, badge(st), " ", h("strong", {}, String(s.tasks_by_state[st])))),
              ),
            ),
            total === 0 ? h("p", { class: "empty" }, "No tasks yet.") : null,
          ),
          section("Last hour", hourChart(s.last_hour)),
          section(
            "Queues",
            table(
              ["Queue", "Messages", "Ready now", "Oldest waiting"],
              s.queues.map((q) =>
                h("tr", {}, h("td", {}, q.queue), h("td", { class: "num" }, String(q.depth)), h("td", { class: "num" }, String(q.visible)), h("td", {}, q.oldest_age_ms === null ? "—" : duration(q.oldest_age_ms))),
              ),
              { caption: "Queue depths", empty: "No queues yet." },
            ),
          ),
        );
      } else {
        cards.push(errorBox(stats.reason));
      }
      if (workers.status === "fulfilled" && workers.value) {
        cards.push(section("Live workers", workerTable(workers.value.filter((w) => w.live))));
      }
      clear(body).append(...cards);
    },
  };
}

function tile(label, value, hint, href) {
  const content = [h("span", { class: "tile-value" }, String(value)), h("span", { class: "tile-label" }, label)];
  return h("div", { class: "tile", title: hint ?? undefined }, href ? h("a", { href }, ...content) : content);
}

/** Tasks created per 5-minute bucket over the last hour, split by the state they are in now. */
function hourChart(buckets) {
  const groups = [
    ["complete", (b) => b.complete],
    ["error", (b) => b.error],
    ["running", (b) => b.created - b.complete - b.error - b.other_finished],
    ["other", (b) => b.other_finished],
  ];
  const max = Math.max(1, ...buckets.map((b) => b.created));
  const w = 28;
  const gap = 6;
  const height = 90;
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${buckets.length * (w + gap)} ${height + 16}`);
  svg.setAttribute("class", "chart");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "Tasks created per 5 minutes over the last hour, by the state they are in now (the table below has the numbers)");
  buckets.forEach((b, i) => {
    let y = height;
    for (const [name, count] of groups) {
      const n = Math.max(0, count(b));
      if (!n) continue;
      const bar = document.createElementNS("http://www.w3.org/2000/svg", "rect");
      const barH = (n / max) * (height - 4);
      y -= barH;
      bar.setAttribute("x", String(i * (w + gap)));
      bar.setAttribute("y", String(y));
      bar.setAttribute("width", String(w));
      bar.setAttribute("height", String(barH));
      bar.setAttribute("class", `bar bar-${name}`);
      svg.append(bar);
    }
    const label = document.createElementNS("http://www.w3.org/2000/svg", "text");
    label.setAttribute("x", String(i * (w + gap)));
    label.setAttribute("y", String(height + 13));
    label.setAttribute("class", "axis");
    label.textContent = i % 3 === 0 ? new Date(b.start).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : "";
    svg.append(label);
  });
  const legend = h(
    "ul",
    { class: "legend" },
    groups.map(([name]) => h("li", {}, h("span", { class: `swatch bar-${name}`, "aria-hidden": "true" }), name)),
  );
  const details = h(
    "details",
    {},
    h("summary", {}, "Numbers"),
    table(
      ["From", "Created", "Complete", "Error"],
      buckets.map((b) => h("tr", {}, h("td", {}, time(b.start)), h("td", { class: "num" }, String(b.created)), h("td", { class: "num" }, String(b.complete)), h("td", { class: "num" }, String(b.error)))),
      { caption: "Tasks per 5 minutes" },
    ),
  );
  return h("div", {}, svg, legend, details);
}

// ---- tasks -----------------------------------------------------------------------------

function tasksPage(query) {
  setTitle("Tasks");
  const filters = Object.fromEntries(query.entries());
  const cursors = []; // the cursors of the pages before the one shown
  let cursor = null;
  const field = (id, label, input) => h("div", { class: "field" }, h("label", { for: id }, label), input);
  const stateSelect = h(
    "select",
    { id: "f-state", name: "state" },
    h("option", { value: "" }, "any"),
    TASK_STATES.map((s) => h("option", { value: s, selected: filters.state === s ? true : undefined }, s.replaceAll("_", " "))),
  );
  const input = (id, name, type = "text") => h("input", { id, name, type, value: filters[name] ?? "" });
  const form = h(
    "form",
    { class: "card filters", role: "search", "aria-label": "Filter tasks" },
    field("f-search", "UUID or idempotency key", input("f-search", "search")),
    field("f-state", "State", stateSelect),
    field("f-namespace", "Namespace", input("f-namespace", "namespace")),
    field("f-name", "Template", input("f-name", "name")),
    field("f-tag", "Tag", input("f-tag", "tag")),
    field("f-after", "Created from", input("f-after", "created_after", "datetime-local")),
    field("f-before", "Created before", input("f-before", "created_before", "datetime-local")),
    h("div", { class: "buttons" }, h("button", { type: "submit", class: "primary" }, "Apply"), h("a", { href: "#/tasks", class: "button" }, "Clear")),
  );
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const params = new URLSearchParams();
    for (const [k, v] of new FormData(form).entries()) if (String(v).trim()) params.set(k, String(v).trim());
    const search = params.get("search");
    if (search && UUID.test(search)) {
      location.hash = `#/tasks/${search.toLowerCase()}`;
      return;
    }
    const target = `#/tasks?${params}`;
    if (location.hash === target) navigate(); // the same filters again: reload them
    else location.hash = target;
  });
  const results = h("div", { class: "card", "aria-live": "polite", "aria-busy": "false" });
  main.append(h("h1", {}, "Tasks"), form, results);
  const apiQuery = () => {
    const p = new URLSearchParams({ limit: filters.limit ?? "50" });
    for (const k of ["state", "namespace", "name", "tag"]) if (filters[k]) p.set(k, filters[k]);
    if (filters.search) p.set("idempotency_key", filters.search);
    for (const k of ["created_after", "created_before"]) {
      if (filters[k]) {
        const d = new Date(filters[k]);
        if (!Number.isNaN(d.getTime())) p.set(k, d.toISOString());
      }
    }
    if (cursor) p.set("cursor", cursor);
    return p;
  };
  const latest = latestOnly();
  const refresh = async () => {
    const mine = latest.begin();
    let data;
    try {
      data = await api(`/v1/tasks?${apiQuery()}`);
    } catch (err) {
      if (latest.current(mine)) clear(results).append(errorBox(err));
      return;
    }
    if (!latest.current(mine)) return;
    const pageNumber = cursors.length + 1;
    const prev = h("button", { type: "button", disabled: cursors.length === 0 ? true : undefined, "data-testid": "prev-page" }, "← Newer");
    const next = h("button", { type: "button", disabled: data.next_cursor ? undefined : true, "data-testid": "next-page" }, "Older →");
    prev.addEventListener("click", () => {
      cursor = cursors.pop() ?? null;
      refresh();
    });
    next.addEventListener("click", () => {
      cursors.push(cursor);
      cursor = data.next_cursor;
      refresh();
    });
    clear(results).append(
      h("h2", { class: "visually-hidden" }, "Results"),
      table(
        ["Task", "Template", "State", "Steps", "Tags", "Created"],
        data.tasks.map((t) =>
          h(
            "tr",
            { "data-task": t.task_uuid, "data-state": t.state },
            h("td", {}, h("a", { href: `#/tasks/${t.task_uuid}`, class: "mono" }, shortUuid(t.task_uuid))),
            h("td", {}, `${t.namespace}/${t.name}`, h("span", { class: "muted" }, ` ${t.version}`)),
            h("td", {}, badge(t.state)),
            h("td", { class: "num" }, `${t.completed_steps}/${t.total_steps}`),
            h("td", {}, t.tags.join(", ")),
            h("td", { title: time(t.created_at) }, ago(t.created_at)),
          ),
        ),
        { caption: "Tasks", empty: "No task matches." },
      ),
      h("nav", { class: "pager", "aria-label": "Pages" }, prev, h("span", { "data-testid": "page-number" }, `Page ${pageNumber}`), next),
    );
  };
  return { refresh, wants: (name) => name.startsWith("task.") };
}

// ---- task detail ---------------------------------------------------------------------

/** Step type of a step, from its template (batch instances take their worker's). */
function stepKind(templateSteps, step) {
  const own = templateSteps.find((s) => s.name === step.name);
  if (own) return own.type && own.type !== "standard" ? own.type : undefined;
  const worker = templateSteps.find((s) => s.type === "batch_worker" && step.name.startsWith(s.name));
  return worker ? "batch_worker" : undefined;
}

/** Each attempt of a step as [start, end, outcome], from its audit trail. */
function attemptsOf(step) {
  const out = [];
  let open = null;
  for (const t of step.transitions) {
    if (t.to_state === "in_progress") {
      open = { start: t.created_at, end: null, outcome: "running" };
      out.push(open);
    } else if (open) {
      open.end = t.created_at;
      open.outcome = t.to_state === "enqueued_for_orchestration" ? "finished" : t.to_state;
      open = null;
    }
  }
  return out;
}

function taskPage(taskUuid, query) {
  setTitle(`Task ${shortUuid(taskUuid)}`);
  let selected = query.get("step");
  let template = null;
  const root = h("div", { class: "task" });
  main.append(root);
  const select = (name) => {
    selected = name;
    history.replaceState(null, "", `#/tasks/${taskUuid}?step=${encodeURIComponent(name)}`);
    refresh().then(() => document.getElementById("step-panel")?.focus());
  };
  const latest = latestOnly();
  const refresh = async () => {
    const mine = latest.begin();
    let task;
    try {
      task = await api(`/v1/tasks/${taskUuid}?include=steps,transitions`);
    } catch (err) {
      if (latest.current(mine)) clear(root).append(h("h1", {}, `Task ${shortUuid(taskUuid)}`), errorBox(err));
      return;
    }
    if (!template && can("templates:read")) {
      template = await api(`/v1/templates/${encodeURIComponent(task.namespace)}/${encodeURIComponent(task.name)}/${encodeURIComponent(task.version)}`).catch(() => ({ definition: { steps: [] } }));
    }
    if (!latest.current(mine)) return;
    const templateSteps = template?.definition?.steps ?? [];
    const steps = task.steps ?? [];
    const focused = document.activeElement?.closest?.("[data-step]")?.dataset.step;
    const actions = [];
    if (can("tasks:cancel") && !FINISHED_TASK_STATES.has(task.state)) {
      actions.push(h("button", { type: "button", class: "danger", onclick: async () => {
        const ok = await confirmAction({ title: "Cancel this task?", description: "Its open steps are cancelled; late results are ignored.", confirmLabel: "Cancel task", reasonRequired: false, danger: true });
        if (ok) runAction("Cancel task", () => api(`/v1/tasks/${taskUuid}`, { method: "DELETE" }));
      } }, "Cancel task"));
    }
    if (can("tasks:retry") && task.state === "error") {
      actions.push(h("button", { type: "button", class: "primary", onclick: async () => {
        const ok = await confirmAction({ title: "Retry this task?", description: "Every failed step is reset and runs again.", confirmLabel: "Retry task" });
        if (ok) runAction("Retry task", () => api(`/v1/tasks/${taskUuid}/retry`, { method: "POST", body: { reason: ok.reason } }));
      } }, "Retry task"));
    }
    const nodes = steps.map((s) => ({ id: s.name, label: s.name, sublabel: `${s.state.replaceAll("_", " ")}${s.attempts > 1 ? ` ×${s.attempts}` : ""}`, state: s.state, kind: stepKind(templateSteps, s) }));
    const edges = steps.flatMap((s) => s.dependencies.map((d) => ({ from: d, to: s.name })));
    const dag = renderDag(nodes, edges, { onSelect: select, selected, label: "Steps of this task; choose one for its details" });
    const step = steps.find((s) => s.name === selected);
    clear(root).append(
      h("div", { class: "title-row" }, h("h1", {}, `${task.namespace}/${task.name} `, h("span", { class: "muted" }, task.version)), badge(task.state), h("div", { class: "actions" }, actions)),
      h("p", { class: "mono muted" }, task.task_uuid),
      h(
        "div",
        { class: "grid two" },
        section("Task", definitionList([
          ["State", badge(task.state)],
          ["Steps", `${task.completed_steps}/${task.total_steps} complete, ${task.active_steps} active, ${task.failed_steps} failed`],
          ["Created", time(task.created_at)],
          ["Updated", time(task.updated_at)],
          ["Completed", task.completed_at ? `${time(task.completed_at)} (${duration(Date.parse(task.completed_at) - Date.parse(task.created_at))})` : "—"],
          ["Initiator", task.initiator ?? "—"],
          ["Source", task.source_system ?? "—"],
          ["Reason", task.reason ?? "—"],
          ["Tags", task.tags.length ? task.tags.join(", ") : "—"],
          ["Priority", String(task.priority)],
          ["Idempotency key", task.idempotency_key ?? "—"],
        ])),
        section("Context", task.context === null ? h("p", { class: "muted" }, "Hidden: this credential lacks tasks:context_read.") : jsonViewer(task.context)),
      ),
      section("Workflow", h("div", { class: "dag-wrap", tabindex: "0", role: "region", "aria-label": "Workflow graph" }, dag), stateLegend()),
      step ? stepPanel(task, step, steps) : h("p", { class: "hint" }, "Choose a step in the graph for its attempts, errors and result."),
      section("Timeline", timeline(steps, select)),
      section("Audit trail", auditTrail(task.transitions ?? [], steps)),
    );
    if (focused) root.querySelector(`[data-step="${CSS.escape(focused)}"]`)?.focus();
  };
  return {
    refresh,
    wants: (_name, event) => event.task_uuid === taskUuid,
  };
}

function stateLegend() {
  const states = ["pending", "enqueued", "in_progress", "waiting_for_retry", "complete", "error", "cancelled", "resolved_manually"];
  return h("ul", { class: "legend" }, states.map((s) => h("li", {}, badge(s))));
}

function stepPanel(task, step, steps) {
  const attempts = attemptsOf(step);
  const actions = [];
  const act = (type, label, options) =>
    h("button", { type: "button", class: options.danger ? "danger" : "", "data-action": type, onclick: async () => {
      const ok = await confirmAction({ title: `${label}: ${step.name}`, confirmLabel: label, ...options });
      if (!ok) return;
      const body = { action_type: type, reason: ok.reason };
      if (type === "complete_manually") body.completion_data = ok.json;
      runAction(label, () => api(`/v1/tasks/${task.task_uuid}/workflow_steps/${encodeURIComponent(step.name)}`, { method: "PATCH", body }));
    } }, label);
  if (can("steps:resolve")) {
    // Each action only from the states the engine accepts it in (StepAction::allowed in
    // core/src/engine/recovery.rs), so that no button can only ever answer "invalid state".
    const from = (type) => STEP_ACTION_STATES[type].has(step.state);
    if (from("reset_for_retry")) actions.push(act("reset_for_retry", "Reset for retry", { description: "The step runs again, with fresh attempts." }));
    if (from("resolve_manually")) actions.push(act("resolve_manually", "Resolve manually", { description: "The step counts as done without a result; its dependents run." }));
    if (from("complete_manually")) actions.push(act("complete_manually", "Complete manually", { description: "The step completes with the result you give.", editor: true }));
    if (from("cancel")) actions.push(act("cancel", "Cancel step", { description: "The step is cancelled, and the pending steps below it.", danger: true }));
  }
  const errors = step.errors.length ? step.errors : step.last_error ? [step.last_error] : [];
  const dependencyResults = step.dependencies.map((d) => {
    const dep = steps.find((s) => s.name === d);
    return h("div", { class: "dep" }, h("h4", {}, d, " ", dep ? badge(dep.state) : null), dep?.results === null && task.context === null ? h("p", { class: "muted" }, "Hidden.") : jsonViewer(dep?.results ?? null, { open: 1 }));
  });
  return h(
    "section",
    { class: "card step-panel", id: "step-panel", tabindex: "-1", "aria-labelledby": "step-title", "data-step-panel": step.name },
    h("div", { class: "title-row" }, h("h2", { id: "step-title" }, `Step ${step.name}`), badge(step.state), h("div", { class: "actions" }, actions)),
    definitionList([
      ["Queue", step.queue],
      ["Attempts", `${step.attempts} of ${step.max_attempts}${step.retryable ? "" : " (not retryable)"}`],
      ["Dependencies", step.dependencies.length ? step.dependencies.join(", ") : "none"],
      ["Created by", step.created_by ?? "the template"],
      ["First attempt", time(step.first_attempted_at)],
      ["Completed", time(step.completed_at)],
      ["Next retry", step.next_retry_at ? time(step.next_retry_at) : "—"],
    ]),
    h("h3", {}, "Attempts"),
    table(
      ["#", "Started", "Duration", "Outcome"],
      attempts.map((a, i) => h("tr", {}, h("td", { class: "num" }, String(i + 1)), h("td", {}, time(a.start)), h("td", {}, a.end ? duration(Date.parse(a.end) - Date.parse(a.start)) : "running"), h("td", {}, a.outcome.replaceAll("_", " ")))),
      { caption: "Attempts", empty: "Not attempted yet." },
    ),
    h("h3", {}, "Errors"),
    errors.length
      ? h("ol", { class: "errors" }, errors.map((e) => h(
          "li",
          { class: "step-error" },
          h("p", {}, h("strong", { class: "error-type" }, e.error_type ?? "error"), ` (attempt ${e.attempt ?? "?"}${e.retryable ? ", retryable" : ""}): `, h("span", { class: "error-message" }, e.message ?? "")),
          e.backtrace ? h("details", { open: true }, h("summary", {}, "Backtrace"), h("pre", { class: "backtrace", tabindex: "0", "aria-label": "Backtrace" }, e.backtrace)) : null,
          e.metadata ? jsonViewer(e.metadata, { open: 0 }) : null,
        )))
      : h("p", { class: "muted" }, "No errors."),
    h("h3", {}, "Result"),
    step.results === null && task.context === null ? h("p", { class: "muted" }, "Hidden: this credential lacks tasks:context_read.") : jsonViewer(step.results ?? null),
    h("h3", {}, "Dependencies' results"),
    dependencyResults.length ? h("div", { class: "deps" }, dependencyResults) : h("p", { class: "muted" }, "No dependencies."),
  );
}

/** A Gantt-like chart: one row per step, one bar per attempt. */
function timeline(steps, select) {
  const rows = steps.map((s) => ({ step: s, attempts: attemptsOf(s) }));
  const all = rows.flatMap((r) => r.attempts);
  if (all.length === 0) return h("p", { class: "empty" }, "No attempts yet.");
  const now = Date.now();
  const start = Math.min(...all.map((a) => Date.parse(a.start)));
  const end = Math.max(...all.map((a) => (a.end ? Date.parse(a.end) : now)), start + 1);
  const span = end - start;
  return h(
    "div",
    { class: "timeline", role: "table", "aria-label": "Attempts over time" },
    h("div", { class: "tl-scale", role: "row" }, h("span", { role: "columnheader" }, "Step"), h("span", { role: "columnheader" }, `0 — ${duration(span)}`)),
    rows.map(({ step, attempts }) =>
      h(
        "div",
        { class: "tl-row", role: "row" },
        h("span", { role: "cell", class: "tl-name" }, h("button", { type: "button", class: "link", onclick: () => select(step.name) }, step.name)),
        h(
          "div",
          { class: "tl-track", role: "cell" },
          attempts.map((a, i) => {
            const s = Date.parse(a.start);
            const e = a.end ? Date.parse(a.end) : now;
            return h("span", {
              class: `tl-bar outcome-${a.outcome}`,
              style: { left: `${((s - start) / span) * 100}%`, width: `${Math.max(0.5, ((e - s) / span) * 100)}%` },
              title: `attempt ${i + 1}: ${duration(e - s)}, ${a.outcome}`,
            }, h("span", { class: "visually-hidden" }, `attempt ${i + 1}: ${duration(e - s)}, ${a.outcome}`));
          }),
        ),
      ),
    ),
  );
}

function auditTrail(taskTransitions, steps) {
  const rows = [
    ...taskTransitions.map((t) => ({ ...t, step_name: null })),
    ...steps.flatMap((s) => s.transitions.map((t) => ({ ...t, step_name: s.name }))),
  ].sort((a, b) => Date.parse(a.created_at) - Date.parse(b.created_at));
  return table(
    ["When", "Step", "Event", "From", "To", "By / why"],
    rows.map((t) => h(
      "tr",
      {},
      h("td", {}, time(t.created_at)),
      h("td", {}, t.step_name ?? "(task)"),
      h("td", {}, t.event),
      h("td", {}, t.from_state ?? "—"),
      h("td", {}, t.to_state),
      h("td", {}, [t.metadata?.operator ?? t.metadata?.by, t.metadata?.reason].filter(Boolean).join(": ")),
    )),
    { caption: "Audit trail", empty: "No transitions." },
  );
}

// ---- DLQ ---------------------------------------------------------------------------------

function dlqPage() {
  setTitle("DLQ");
  const body = h("div", {});
  main.append(h("h1", {}, "Dead-letter queue"), body);
  return {
    wants: (name) => name.startsWith("task."),
    refresh: async () => {
      const [stats, queue, staleness] = await Promise.allSettled([
        can("dlq:stats") ? api("/v1/dlq/stats") : Promise.resolve(null),
        api("/v1/dlq/investigation-queue?limit=50"),
        api("/v1/dlq/staleness?min_ratio=0&limit=50"),
      ]);
      const parts = [];
      if (stats.status === "fulfilled" && stats.value) {
        const s = stats.value;
        parts.push(h("section", { class: "card tiles", "aria-label": "DLQ totals" }, tile("Open", s.open), tile("All time", s.total), Object.entries(s.by_reason).map(([r, n]) => tile(r.replaceAll("_", " "), n))));
      }
      parts.push(section("Investigation queue", queue.status === "fulfilled"
        ? table(["Entry", "Task", "Reason", "Status", "Score", "Since"], queue.value.map((q) => h(
            "tr",
            {},
            h("td", {}, h("a", { href: `#/dlq/${q.entry.entry_uuid}`, class: "mono" }, shortUuid(q.entry.entry_uuid))),
            h("td", {}, h("a", { href: `#/tasks/${q.entry.task_uuid}`, class: "mono" }, shortUuid(q.entry.task_uuid))),
            h("td", {}, q.entry.reason.replaceAll("_", " ")),
            h("td", {}, badge(q.entry.status)),
            h("td", { class: "num" }, q.score.toFixed(1)),
            h("td", {}, ago(q.entry.created_at)),
          )), { caption: "Open entries, most urgent first", empty: "No open entries." })
        : errorBox(queue.reason)));
      parts.push(section("Staleness monitor", staleness.status === "fulfilled"
        ? table(["Task", "State", "Health", "Idle", "Threshold"], staleness.value.map((t) => h(
            "tr",
            {},
            h("td", {}, h("a", { href: `#/tasks/${t.task_uuid}`, class: "mono" }, shortUuid(t.task_uuid))),
            h("td", {}, badge(t.state)),
            h("td", {}, h("span", { class: `badge health-${t.health}` }, t.health)),
            h("td", {}, duration(t.idle_ms)),
            h("td", {}, duration(t.threshold_ms)),
          )), { caption: "Unfinished tasks by staleness", empty: "No unfinished tasks." })
        : errorBox(staleness.reason)));
      clear(body).append(...parts);
    },
  };
}

function dlqEntryPage(entryUuid) {
  setTitle(`DLQ entry ${shortUuid(entryUuid)}`);
  const body = h("div", {});
  main.append(body);
  const refresh = async () => {
    let e;
    try {
      e = await api(`/v1/dlq/entry/${entryUuid}`);
    } catch (err) {
      clear(body).append(h("h1", {}, "DLQ entry"), errorBox(err));
      return;
    }
    let form = null;
    if (can("dlq:update")) {
      const status = h("select", { id: "dlq-status" }, h("option", { value: "" }, "(keep)"), ["pending", "investigating", "manually_resolved", "permanently_failed", "cancelled"].map((s) => h("option", { value: s }, s.replaceAll("_", " "))));
      const note = h("textarea", { id: "dlq-note", rows: 3, required: true });
      form = h("form", { class: "card" }, h("h2", {}, "Update"),
        h("div", { class: "field" }, h("label", { for: "dlq-status" }, "Status"), status),
        h("div", { class: "field" }, h("label", { for: "dlq-note" }, "Note"), note),
        h("div", { class: "buttons" }, h("button", { type: "submit", class: "primary" }, "Save")));
      form.addEventListener("submit", (ev) => {
        ev.preventDefault();
        if (!note.value.trim()) return note.focus();
        const payload = { note: note.value.trim(), ...(status.value ? { status: status.value } : {}) };
        runAction("Update DLQ entry", () => api(`/v1/dlq/entry/${entryUuid}`, { method: "PATCH", body: payload }));
      });
    }
    clear(body).append(
      h("div", { class: "title-row" }, h("h1", {}, `DLQ entry ${shortUuid(e.entry_uuid)}`), badge(e.status)),
      section("Entry", definitionList([
        ["Task", h("a", { href: `#/tasks/${e.task_uuid}`, class: "mono" }, e.task_uuid)],
        ["Reason", e.reason.replaceAll("_", " ")],
        ["Task state then", badge(e.task_state)],
        ["Created", time(e.created_at)],
        ["Resolved", e.resolved_at ? `${time(e.resolved_at)} by ${e.resolved_by}` : "—"],
      ])),
      section("Notes", e.notes.length ? h("ol", { class: "notes" }, e.notes.map((n) => h("li", {}, h("strong", {}, n.by), ` · ${time(n.at)}${n.status ? ` · ${n.status}` : ""}: `, n.text))) : h("p", { class: "muted" }, "No notes.")),
      form,
      section("Task snapshot", jsonViewer(e.snapshot, { open: 1 })),
    );
  };
  // No live reload here: it would wipe a note being typed. The page reloads after a save.
  return { refresh, wants: () => false, poll: false };
}

// ---- templates -------------------------------------------------------------------------

function templatesPage() {
  setTitle("Templates");
  const body = h("div", { class: "card" });
  main.append(h("h1", {}, "Templates"), body);
  return {
    refresh: async () => {
      let list;
      try {
        list = await api("/v1/templates");
      } catch (err) {
        clear(body).append(errorBox(err));
        return;
      }
      const byName = new Map();
      for (const t of list) {
        const key = `${t.namespace}/${t.name}`;
        if (!byName.has(key)) byName.set(key, []);
        byName.get(key).push(t);
      }
      clear(body).append(table(["Template", "Versions", "Steps", "Description"], [...byName.entries()].map(([key, versions]) => {
        const latest = versions[versions.length - 1];
        return h(
          "tr",
          {},
          h("td", {}, h("a", { href: `#/templates/${encodeURIComponent(latest.namespace)}/${encodeURIComponent(latest.name)}/${encodeURIComponent(latest.version)}` }, key)),
          h("td", {}, versions.map((v, i) => [i ? ", " : "", h("a", { href: `#/templates/${encodeURIComponent(v.namespace)}/${encodeURIComponent(v.name)}/${encodeURIComponent(v.version)}` }, v.version)])),
          h("td", { class: "num" }, String(latest.step_count)),
          h("td", {}, latest.description ?? ""),
        );
      }), { caption: "Registered templates", empty: "No templates registered." }));
    },
  };
}

function templatePage(namespace, name, version) {
  setTitle(`${namespace}/${name}`);
  const body = h("div", {});
  main.append(body);
  return {
    refresh: async () => {
      let t;
      try {
        t = await api(`/v1/templates/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}/${encodeURIComponent(version)}`);
      } catch (err) {
        clear(body).append(h("h1", {}, `${namespace}/${name}`), errorBox(err));
        return;
      }
      const steps = t.definition.steps ?? [];
      const nodes = steps.map((s) => ({ id: s.name, label: s.name, sublabel: s.handler?.callable ?? "", kind: s.type && s.type !== "standard" ? s.type : undefined }));
      const edges = steps.flatMap((s) => (s.dependencies ?? []).map((d) => ({ from: d, to: s.name })));
      clear(body).append(
        h("h1", {}, `${t.namespace}/${t.name} `, h("span", { class: "muted" }, t.version)),
        t.definition.description ? h("p", {}, t.definition.description) : null,
        section("Steps", h("div", { class: "dag-wrap", tabindex: "0", role: "region", "aria-label": "Steps graph" }, renderDag(nodes, edges, { label: "The template's steps" })),
          h("p", { class: "hint" }, "◆ decision · ▤ batchable · ▥ batch worker · ⋈ deferred convergence"),
          definitionList([["Queues", t.queues.join(", ")]])),
        section("YAML", h("pre", { class: "yaml", tabindex: "0", "aria-label": "Template YAML" }, toYaml(t.definition))),
      );
    },
  };
}

// ---- workers ---------------------------------------------------------------------------

function workerTable(workers) {
  return table(
    ["Worker", "Language", "Queues", "In flight", "Started", "Last heartbeat", "Status"],
    workers.map((w) => h(
      "tr",
      { "data-worker": w.worker_id },
      h("td", {}, w.worker_id, h("span", { class: "muted" }, ` ${w.host}:${w.pid}`)),
      h("td", {}, w.language),
      h("td", {}, w.queues.join(", ")),
      h("td", { class: "num" }, `${w.in_flight}/${w.concurrency}`),
      h("td", {}, ago(w.started_at)),
      h("td", {}, ago(w.last_heartbeat_at)),
      h("td", {}, w.live ? h("span", { class: "badge state-complete" }, "live") : h("span", { class: "badge state-cancelled" }, w.stopped_at ? "stopped" : "dead")),
    )),
    { caption: "Workers", empty: "No workers seen in the last hour." },
  );
}

function workersPage() {
  setTitle("Workers");
  const body = h("div", { class: "card" });
  main.append(h("h1", {}, "Workers"), body);
  return {
    wants: (name) => name.startsWith("worker."),
    refresh: async () => {
      try {
        clear(body).append(workerTable(await api("/v1/workers")));
      } catch (err) {
        clear(body).append(errorBox(err));
      }
    },
  };
}
