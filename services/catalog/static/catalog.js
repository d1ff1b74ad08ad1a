// The catalog page: cards, filter, search, launch with progress, failures with logs.
"use strict";
(function () {
  const body = document.body.dataset;
  const api = body.prefix + "api/";
  const cards = document.getElementById("cards");
  const category = document.getElementById("category");
  const search = document.getElementById("search");
  const state = { apps: [], launches: {} };
  const POLL_MS = 1000, POLL_MAX = 600;

  async function call(method, path, data) {
    const init = { method, credentials: "same-origin", headers: { "X-XSRFToken": body.xsrf } };
    if (data !== undefined) {
      init.body = JSON.stringify(data);
      init.headers["Content-Type"] = "application/json";
    }
    const r = await fetch(api + path, init);
    const text = await r.text();
    let json = {};
    try { json = text ? JSON.parse(text) : {}; } catch (e) { json = { message: text }; }
    if (!r.ok) throw new Error(json.message || `HTTP ${r.status}`);
    return json;
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v; else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v);
    }
    for (const c of children) if (c !== null && c !== undefined) node.append(c);
    return node;
  }

  function alertBox(text, level) {
    const box = document.getElementById("alert");
    box.className = `alert alert-${level || "danger"}` + (text ? "" : " d-none");
    box.textContent = text || "";
  }

  const LABELS = { starting: "Starting", running: "Running", failed: "Failed", stopped: "Not running" };
  const BADGES = { starting: "text-bg-warning", running: "ls-running", failed: "text-bg-danger", stopped: "text-bg-secondary" };

  function card(app) {
    const launch = state.launches[app.id];
    const s = launch ? launch.state : "stopped";
    const icon = app.icon ? el("img", { src: app.icon, alt: "", class: "app-icon" }) : el("div", { class: "app-icon bg-secondary" });
    const buttons = el("div", { class: "d-flex gap-2 mt-auto" });
    if (s === "running") {
      buttons.append(el("a", { class: "btn btn-primary btn-sm", href: launch.url || "#", "data-action": "open" }, "Open"));
      buttons.append(el("button", { class: "btn btn-outline-danger btn-sm", onclick: () => stop(app, launch), "data-action": "stop" }, "Stop"));
    } else if (s === "starting") {
      buttons.append(el("button", { class: "btn btn-primary btn-sm", disabled: "" }, "Starting…"));
    } else {
      buttons.append(el("button", { class: "btn btn-primary btn-sm", onclick: () => launchApp(app), "data-action": "launch" }, "Launch"));
    }
    const info = el("div", { class: "app-progress small text-muted mt-2" }, launch && s === "starting" ? (launch.message || "Starting…") : "");
    const failure = launch && s === "failed" ? el("div", { class: "app-failure mt-2" },
      el("div", { class: "text-danger small fw-semibold" }, launch.message || "The launch failed"),
      launch.log ? el("pre", { class: "app-log mt-2", "aria-label": "Last log lines" }, launch.log.join("\n") || "(the app wrote nothing)") : null) : null;
    return el("div", { class: "col" }, el("div", { class: "card app-card h-100", "data-app": app.id, "data-state": s },
      el("div", { class: "card-body d-flex flex-column" },
        el("div", { class: "d-flex gap-3 mb-2" }, icon,
          el("div", {}, el("h2", { class: "h6 mb-0" }, app.title),
            el("div", { class: "small text-muted" }, `${app.category} · version ${app.version}` + (app.kind === "standalone" ? " · own server" : "")))),
        el("p", { class: "small flex-grow-1" }, app.description),
        el("div", { class: "mb-2" }, el("span", { class: `badge ${BADGES[s] || "text-bg-secondary"} app-state` }, LABELS[s] || s)),
        buttons, info, failure)));
  }

  function render() {
    const q = search.value.trim().toLowerCase();
    const cat = category.value;
    const shown = state.apps.filter((a) => (!cat || a.category === cat) &&
      (!q || `${a.title} ${a.description} ${a.id}`.toLowerCase().includes(q)));
    cards.replaceChildren(...(shown.length ? shown.map(card) : [el("p", { class: "text-muted" }, "No apps match.")]));
  }

  async function logs(launch) {
    try { return (await call("GET", `launches/${launch.id}/logs?lines=40`)).lines; }
    catch (e) { return [`(no log: ${e.message})`]; }
  }

  async function fail(app, launch, message) {
    launch.state = "failed";
    launch.message = message;
    launch.log = await logs(launch);
    state.launches[app.id] = launch;
    render();
  }

  async function checkApp(app, launch) {
    // proxied apps start on their first request; a failure answers an error page
    try {
      // asking for HTML, as a browser tab does: a workspace not visited yet signs us in
      const r = await fetch(launch.url, { credentials: "same-origin", headers: { Accept: "text/html" } });
      if (!r.ok) return fail(app, launch, `${app.title} did not start: HTTP ${r.status} from ${launch.url}`);
    } catch (e) {
      return fail(app, launch, `${app.title} did not answer: ${e.message}`);
    }
    launch.state = "running";
    state.launches[app.id] = launch;
    render();
  }

  async function follow(app, launch) {
    for (let i = 0; i < POLL_MAX; i++) {
      const url = launch.url;
      launch = Object.assign(await call("GET", `launches/${launch.id}`), { url });
      if (launch.state === "failed") return fail(app, launch, launch.message);
      // superseded: another launch of this app (another tab) tells the state now
      if (launch.state === "stopped" || launch.state === "superseded") { delete state.launches[app.id]; return render(); }
      if (launch.state === "running") return checkApp(app, launch);
      state.launches[app.id] = launch;
      render();
      await new Promise((ok) => setTimeout(ok, POLL_MS));
    }
    return fail(app, launch, "The launch took too long");
  }

  async function launchApp(app) {
    alertBox("");
    state.launches[app.id] = { state: "starting", message: "Asking the hub to start it…" };
    render();
    let launch;
    try {
      launch = await call("POST", `apps/${app.id}/launch`, {});
    } catch (e) {
      state.launches[app.id] = { state: "failed", message: `Launch refused: ${e.message}` };
      return render();
    }
    await follow(app, launch);
  }

  async function stop(app, launch) {
    try {
      await call("POST", `launches/${launch.id}/stop`);
      delete state.launches[app.id];
      render();
    } catch (e) { alertBox(`Stopping ${app.title} failed: ${e.message}`); }
  }

  async function load() {
    try {
      const [apps, launches] = await Promise.all([call("GET", "apps"), call("GET", "launches?active=1")]);
      state.apps = apps.apps;
      const cats = [...new Set(state.apps.map((a) => a.category))].sort();
      category.append(...cats.map((c) => el("option", { value: c }, c)));
      for (const l of launches.launches.reverse()) state.launches[l.app] = l;
      render();
      for (const l of Object.values(state.launches)) {
        const app = state.apps.find((a) => a.id === l.app);
        l.url = `${body.baseUrl}user/${encodeURIComponent(body.user)}/${app ? (app.kind === "standalone" ? `${app.id}/${app.id}/` : `${app.id}/`) : ""}`;
        if (app) follow(app, l).catch((e) => alertBox(e.message));
      }
    } catch (e) {
      cards.replaceChildren(el("p", { class: "text-danger" }, `The catalog could not be loaded: ${e.message}`));
    }
  }

  category.addEventListener("change", render);
  search.addEventListener("input", render);
  load();
})();
