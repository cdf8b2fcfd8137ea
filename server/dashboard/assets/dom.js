// A few DOM helpers. Text always goes in as text nodes (never innerHTML), so nothing the API
// returns — step names, error messages, results — can inject markup.

/** h("a", {href: "#/"}, "text", childNode, …). `on*` attributes take listeners; `style` an object. */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") node.addEventListener(k.slice(2), v);
    else if (k === "class") node.className = v;
    // Through the CSSOM: the Content-Security-Policy forbids style attributes in markup.
    else if (k === "style" && typeof v === "object") Object.assign(node.style, v);
    else if (v === true) node.setAttribute(k, "");
    else node.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

export function clear(node) {
  while (node.firstChild) node.firstChild.remove();
  return node;
}

/** "3 s ago", "2 min ago", … for a timestamp. */
export function ago(iso) {
  if (!iso) return "—";
  const ms = Date.now() - Date.parse(iso);
  if (!Number.isFinite(ms)) return "—";
  if (ms < 0) return "just now";
  return `${duration(ms)} ago`;
}

/** A duration in ms, human-sized. */
export function duration(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return "—";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s`;
  if (ms < 3_600_000) return `${Math.round(ms / 60_000)} min`;
  if (ms < 86_400_000) return `${(ms / 3_600_000).toFixed(1)} h`;
  return `${(ms / 86_400_000).toFixed(1)} d`;
}

export function time(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? "—" : d.toLocaleString();
}

/** A state as a coloured badge (the colour is never the only cue: the text says it). */
export function badge(state) {
  return h("span", { class: `badge state-${state}` }, String(state ?? "—").replaceAll("_", " "));
}

export function shortUuid(uuid) {
  return uuid ? uuid.slice(0, 8) : "—";
}
