// A collapsible JSON viewer (native <details>, so it is keyboard-usable for free) and a YAML
// rendering of a template's stored definition.

import { h } from "./dom.js";

/** A tree of <details> for objects and arrays; scalars inline. Levels past `open` start closed. */
export function jsonViewer(value, { open = 2 } = {}) {
  if (value === null || value === undefined) return h("code", { class: "json-null" }, "null");
  return h("div", { class: "json" }, node(value, open, 0));
}

function scalar(value) {
  if (value === null) return h("span", { class: "json-null" }, "null");
  switch (typeof value) {
    case "string":
      return h("span", { class: "json-string" }, JSON.stringify(value));
    case "number":
      return h("span", { class: "json-number" }, String(value));
    case "boolean":
      return h("span", { class: "json-bool" }, String(value));
    default:
      return h("span", {}, String(value));
  }
}

function node(value, open, depth, key) {
  const keyPart = key === undefined ? [] : [h("span", { class: "json-key" }, `${key}: `)];
  if (value === null || typeof value !== "object") return h("div", { class: "json-row" }, ...keyPart, scalar(value));
  const entries = Array.isArray(value) ? value.map((v, i) => [i, v]) : Object.entries(value);
  const brackets = Array.isArray(value) ? ["[", "]"] : ["{", "}"];
  if (entries.length === 0) return h("div", { class: "json-row" }, ...keyPart, `${brackets[0]}${brackets[1]}`);
  const summary = h(
    "summary",
    {},
    ...keyPart,
    `${brackets[0]} ${entries.length} ${Array.isArray(value) ? "items" : "keys"} ${brackets[1]}`,
  );
  const details = h("details", { class: "json-node" }, summary);
  if (depth < open) details.open = true;
  for (const [k, v] of entries) details.append(node(v, open, depth + 1, k));
  return details;
}

/** `value` as YAML text (block style; strings quoted when plain text would be misread). */
export function toYaml(value, indent = 0) {
  const pad = "  ".repeat(indent);
  if (Array.isArray(value)) {
    if (value.length === 0) return "[]";
    return value
      .map((v) => {
        if (v !== null && typeof v === "object" && Object.keys(v).length) {
          const inner = toYaml(v, indent + 1).replace(/^\s+/, "");
          return `${pad}- ${inner}`;
        }
        return `${pad}- ${yamlScalar(v)}`;
      })
      .join("\n");
  }
  if (value !== null && typeof value === "object") {
    const keys = Object.keys(value);
    if (keys.length === 0) return "{}";
    return keys
      .map((k) => {
        const v = value[k];
        const key = yamlKey(k);
        if (v !== null && typeof v === "object" && (Array.isArray(v) ? v.length : Object.keys(v).length)) {
          return `${pad}${key}:\n${toYaml(v, indent + 1)}`;
        }
        return `${pad}${key}: ${yamlScalar(v)}`;
      })
      .join("\n");
  }
  return `${pad}${yamlScalar(value)}`;
}

function yamlKey(k) {
  return /^[A-Za-z_][\w.-]*$/.test(k) ? k : JSON.stringify(k);
}

function yamlScalar(v) {
  if (v === null || v === undefined) return "null";
  if (Array.isArray(v)) return "[]";
  if (typeof v === "object") return "{}";
  if (typeof v !== "string") return String(v);
  const plain = /^[A-Za-z0-9_./@][\w ./@-]*$/.test(v) && !/^(true|false|null|yes|no|on|off|~)$/i.test(v) && !/^[\d.]+$/.test(v) && !v.endsWith(" ");
  return plain ? v : JSON.stringify(v);
}
