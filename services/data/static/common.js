// Shared by the data pages: the API with the page's XSRF token, and safe DOM building
// (every value goes in as text, never as HTML).
"use strict";
window.labspaceData = (function () {
  const body = document.body.dataset;
  const api = body.prefix + "api/";

  async function call(method, path, data) {
    const init = { method, credentials: "same-origin", headers: { "X-XSRFToken": body.xsrf, Accept: "application/json" } };
    if (data !== undefined) {
      init.body = JSON.stringify(data);
      init.headers["Content-Type"] = "application/json";
    }
    let r;
    try { r = await fetch(api + path, init); } catch (e) { throw new Error(`The data service did not answer (${e.message})`); }
    const text = await r.text();
    let json = {};
    try { json = text ? JSON.parse(text) : {}; } catch (e) { json = { message: text.slice(0, 200) }; }
    if (!r.ok) throw new Error(json.message || `HTTP ${r.status}`);
    return json;
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children) if (c !== null && c !== undefined && c !== false) node.append(c);
    return node;
  }

  function say(text, level) {
    const box = document.getElementById("alert");
    box.className = `alert alert-${level || "danger"}` + (text ? "" : " d-none");
    box.textContent = text || "";
  }

  const UNITS = ["bytes", "KB", "MB", "GB", "TB", "PB"];
  function size(bytes) {
    if (bytes === null || bytes === undefined || bytes === "") return "unknown";
    let n = Number(bytes), i = 0;
    if (!Number.isFinite(n)) return String(bytes);
    while (n >= 1000 && i < UNITS.length - 1) { n /= 1000; i++; }
    return i === 0 ? `${n} bytes` : `${n.toFixed(n < 10 ? 1 : 0)} ${UNITS[i]}`;
  }

  function when(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? String(iso) : d.toISOString().replace("T", " ").slice(0, 19);
  }

  function levelBadge(level, extra) {
    const label = level === "write" ? "read and write" : level === "read" ? "read only" : String(level || "none");
    return el("span", { class: `badge ls-${level === "write" ? "write" : "read"} ${extra || ""}`, "data-level": level || "" }, label);
  }

  return { body, api, call, el, say, size, when, levelBadge };
})();
