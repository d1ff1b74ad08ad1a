// Admin page: list every app, add or update (a new version), disable, enable, delete.
"use strict";
(function () {
  const body = document.body.dataset;
  const api = body.prefix + "api/";
  const table = document.querySelector("#apps-table tbody");
  const editor = document.getElementById("editor");
  const text = document.getElementById("definition");
  let editing = null;

  async function call(method, path, data) {
    const init = { method, credentials: "same-origin", headers: { "X-XSRFToken": body.xsrf } };
    if (data !== undefined) { init.body = JSON.stringify(data); init.headers["Content-Type"] = "application/json"; }
    const r = await fetch(api + path, init);
    const t = await r.text();
    let json = {};
    try { json = t ? JSON.parse(t) : {}; } catch (e) { json = { message: t }; }
    if (!r.ok) throw new Error(json.message || `HTTP ${r.status}`);
    return json;
  }
  function say(message, level) {
    const box = document.getElementById("alert");
    box.className = `alert alert-${level || "success"}`;
    box.textContent = message;
  }
  function cell(content) { const td = document.createElement("td"); td.append(content); return td; }
  function button(label, cls, fn) {
    const b = document.createElement("button");
    b.type = "button"; b.className = `btn btn-sm ${cls} me-1`; b.textContent = label;
    b.addEventListener("click", () => fn().catch((e) => say(e.message, "danger")));
    return b;
  }

  async function edit(app) {
    const v = await call("GET", `apps/${app.id}/versions`);
    const defn = Object.assign({}, v.versions[0].definition);
    defn.version = defn.version.split("+r")[0];
    text.value = JSON.stringify(defn, null, 2);
    editing = app.id;
    document.getElementById("editor-title").textContent = `Update ${app.id} (saves a new version)`;
    document.getElementById("save").textContent = "Save new version";
    const list = document.getElementById("versions");
    document.getElementById("versions-title").classList.remove("d-none");
    list.replaceChildren(...v.versions.map((x) => {
      const li = document.createElement("li");
      li.className = "list-group-item small";
      li.textContent = `${x.version} · revision ${x.revision} · ${x.source} ${x.created_by} · ${x.created}`;
      return li;
    }));
  }

  async function load() {
    const apps = (await call("GET", "apps?all=1")).apps;
    table.replaceChildren(...apps.map((a) => {
      const tr = document.createElement("tr");
      tr.dataset.app = a.id;
      const actions = document.createElement("td");
      actions.append(button("Edit", "btn-outline-primary", () => edit(a)));
      actions.append(a.disabled
        ? button("Enable", "btn-outline-success", async () => { await call("POST", `apps/${a.id}/enable`); say(`${a.id} enabled`); await load(); })
        : button("Disable", "btn-outline-warning", async () => { await call("POST", `apps/${a.id}/disable`); say(`${a.id} disabled`); await load(); }));
      actions.append(button("Delete", "btn-outline-danger", async () => {
        if (!confirm(`Delete ${a.id} and all its versions?`)) return;
        await call("DELETE", `apps/${a.id}`); say(`${a.id} deleted`); await load();
      }));
      tr.append(cell(a.title + " (" + a.id + ")"), cell(a.kind), cell(`${a.version} (${a.versions})`),
        cell(a.groups.join(", ") || "everyone"), cell(a.source), cell(a.disabled ? "disabled" : "enabled"), actions);
      return tr;
    }));
  }

  editor.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    let defn;
    try { defn = JSON.parse(text.value); } catch (e) { return say(`Not valid JSON: ${e.message}`, "danger"); }
    try {
      const app = editing ? await call("PATCH", `apps/${editing}`, defn) : await call("POST", "apps", defn);
      say(`${app.id} saved as version ${app.version}`);
      await load();
      await edit(app);
    } catch (e) { say(e.message, "danger"); }
  });
  document.getElementById("new").addEventListener("click", () => {
    editing = null;
    document.getElementById("editor-title").textContent = "Add an app";
    document.getElementById("save").textContent = "Add app";
    document.getElementById("versions-title").classList.add("d-none");
    document.getElementById("versions").replaceChildren();
  });
  load().catch((e) => say(e.message, "danger"));
})();
