// The dashboard's only way to the engine: the REST API under /v1, with the credential the
// user signed in with (session storage: it goes when the tab closes, and never into a URL).

const CREDENTIAL_KEY = "tasker.credential";
/** How long a new event stream may stay silent before it counts as live. */
const WARM_UP_MS = 5000;

/** @returns {{kind: "key" | "token", value: string} | null} */
export function credential() {
  try {
    const c = JSON.parse(sessionStorage.getItem(CREDENTIAL_KEY) ?? "null");
    return c && (c.kind === "key" || c.kind === "token") && typeof c.value === "string" ? c : null;
  } catch {
    return null;
  }
}

export function setCredential(kind, value) {
  sessionStorage.setItem(CREDENTIAL_KEY, JSON.stringify({ kind, value }));
}

export function clearCredential() {
  sessionStorage.removeItem(CREDENTIAL_KEY);
}

export function authHeaders() {
  const c = credential();
  if (!c) return {};
  return c.kind === "token" ? { Authorization: `Bearer ${c.value}` } : { "X-API-Key": c.value };
}

export class ApiError extends Error {
  constructor(status, body) {
    const message = body && typeof body === "object" && body.message ? body.message : `HTTP ${status}`;
    super(message);
    this.status = status;
    this.code = body && typeof body === "object" ? body.error : undefined;
    this.details = body && typeof body === "object" ? body.details : undefined;
  }
}

/** Calls the API; a 401 forgets the credential and tells the app to show the sign-in page. */
export async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json", ...authHeaders() };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
  });
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (response.status === 401) {
    clearCredential();
    window.dispatchEvent(new CustomEvent("tasker:unauthenticated"));
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

/**
 * One Server-Sent Events connection to /v1/events/stream for the whole page. It is read with
 * fetch rather than EventSource because EventSource cannot send the credential header (and a
 * credential in the URL would end up in logs). When the stream cannot be opened the feed says
 * so (`connected` false) and pages fall back to polling; it keeps trying to reconnect, resuming
 * after the last event it saw (Last-Event-ID).
 */
export class LiveFeed {
  constructor() {
    this.listeners = new Set();
    this.statusListeners = new Set();
    this.connected = false;
    this.lastEventId = null;
    this.controller = null;
    this.stopped = false;
  }

  onEvent(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  onStatus(fn) {
    this.statusListeners.add(fn);
    fn(this.connected);
    return () => this.statusListeners.delete(fn);
  }

  setConnected(connected) {
    if (this.connected === connected) return;
    this.connected = connected;
    for (const fn of this.statusListeners) fn(connected);
  }

  /** (Re)connects with the current credential. */
  restart() {
    this.stopped = false;
    if (this.controller) this.controller.abort();
    this.controller = new AbortController();
    this.run(this.controller.signal);
  }

  stop() {
    this.stopped = true;
    if (this.controller) this.controller.abort();
    this.setConnected(false);
  }

  async run(signal) {
    let delay = 1000;
    while (!signal.aborted) {
      try {
        const headers = { Accept: "text/event-stream", ...authHeaders() };
        if (this.lastEventId !== null) headers["Last-Event-ID"] = this.lastEventId;
        const response = await fetch("/v1/events/stream", { headers, signal, cache: "no-store" });
        if (!response.ok || !response.body) throw new Error(`stream answered ${response.status}`);
        // The stream's subscriber group takes a moment to be given its partitions, and events
        // written meanwhile arrive only then: the feed counts as live (and pages stop polling
        // quickly) at its first event, or after a few quiet seconds.
        const warm = setTimeout(() => this.setConnected(true), WARM_UP_MS);
        delay = 1000;
        try {
          await this.read(response.body, signal);
        } finally {
          clearTimeout(warm);
        }
      } catch {
        // Not connected (no permission, server gone, network): pages poll meanwhile.
      }
      this.setConnected(false);
      if (signal.aborted) return;
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 15000);
    }
  }

  async read(body, signal) {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    while (!signal.aborted) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        this.dispatch(block);
      }
    }
  }

  dispatch(block) {
    let name = "message";
    let id = null;
    const data = [];
    for (const line of block.split("\n")) {
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") name = value;
      else if (field === "data") data.push(value);
      else if (field === "id") id = value;
    }
    if (id !== null) this.lastEventId = id;
    this.setConnected(true);
    if (data.length === 0) return;
    let event;
    try {
      event = JSON.parse(data.join("\n"));
    } catch {
      return;
    }
    for (const fn of this.listeners) fn(name, event);
  }
}
