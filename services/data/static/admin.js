// Data admin: datasets (add, edit, delete, s3 credentials), grants by group and user,
// the audit trail (filters, CSV), running workspaces holding revoked grants (Stop).
"use strict";
(function () {
  const { api, call, el, say, size, when, levelBadge } = window.labspaceData;
  const $ = (id) => document.getElementById(id);
  const enc = encodeURIComponent;
  const state = { datasets: [], editing: null, loaded: {}, grantsOf: "" };
  const FIELDS = ["id", "title", "description", "kind", "source", "sub_path", "mount_path", "size", "owner_group", "tags"];
  const S3 = ["endpoint", "bucket", "prefix", "region"];

  // an action of a button: errors go to the alert box, the button waits meanwhile
  function button(label, cls, fn, attrs) {
    const b = el("button", Object.assign({ type: "button", class: `btn btn-sm ${cls} me-1` }, attrs || {}), label);
    b.addEventListener("click", async () => {
      b.disabled = true;
      try { await fn(); } catch (e) { say(e.message, "danger"); } finally { b.disabled = false; }
    });
    return b;
  }
  const cell = (...content) => el("td", {}, ...content);

  // -- tabs ------------------------------------------------------------------
  function show(tab) {
    if (!["datasets", "grants", "audit", "holders"].includes(tab)) tab = "datasets";
    for (const b of document.querySelectorAll("#tabs [data-tab]")) {
      b.classList.toggle("active", b.dataset.tab === tab);
      b.setAttribute("aria-selected", b.dataset.tab === tab ? "true" : "false");
    }
    for (const s of document.querySelectorAll(".ls-tab")) s.classList.toggle("d-none", s.id !== `tab-${tab}`);
    const loaders = { grants: loadGrants, audit: loadAudit, holders: loadHolders };
    if (loaders[tab]) loaders[tab]().catch((e) => say(e.message, "danger"));
    history.replaceState(null, "", tab === "datasets" ? location.pathname : `#${tab}`);
  }

  // -- datasets ----------------------------------------------------------------
  function where(d) {
    if (d.kind === "s3") return d.s3 ? `s3://${d.s3.bucket}/${d.s3.prefix || ""}` : "s3://";
    return d.source + (d.sub_path ? ` (${d.sub_path})` : "");
  }

  // a dataset of labspace.yaml is changed there (the API refuses); its grants and credentials here
  const fixed = (d) => d.source_of === "settings";

  function datasetRow(d) {
    const creds = d.kind === "s3" && d.credentials
      ? el("div", { class: "small text-muted" }, `credentials: read ${d.credentials.read ? "set" : "missing"}, write ${d.credentials.write ? "set" : "missing"}`) : null;
    const mounted = d.kind === "s3" ? el("span", { class: "small text-muted" }, "not mounted (fsspec)") : el("code", {}, d.mount_path || "");
    return el("tr", { "data-dataset": d.id },
      cell(el("div", { class: "fw-semibold ds-title" }, d.title || d.id),
        el("div", { class: "small text-muted" }, `${d.id} · from ${d.source_of === "settings" ? "labspace.yaml" : "the API"}`),
        d.description ? el("div", { class: "small ds-description" }, d.description) : null),
      cell(d.kind), cell(el("code", {}, where(d)), creds), cell(mounted),
      cell(size(d.size)), cell(d.owner_group || ""),
      el("td", { class: "ls-actions" },
        button(fixed(d) ? "View" : "Edit", "btn-outline-primary", async () => edit(d)),
        button("Grants", "btn-outline-secondary", async () => { $("g-dataset").value = d.id; show("grants"); }),
        fixed(d) ? null : button("Delete", "btn-outline-danger", () => remove(d))));
  }

  async function loadDatasets() {
    const answer = await call("GET", "datasets");
    state.datasets = Array.isArray(answer) ? answer : answer.datasets || [];
    const rows = state.datasets.map(datasetRow);
    $("datasets-table").tBodies[0].replaceChildren(...(rows.length ? rows
      : [el("tr", {}, el("td", { colspan: "7", class: "text-muted" }, "No datasets yet: add one below, or in labspace.yaml (data.datasets)."))]));
    const options = state.datasets.map((d) => el("option", { value: d.id }, `${d.title || d.id} (${d.id})`));
    const keep = $("g-dataset").value || state.grantsOf;
    $("g-dataset").replaceChildren(...options);
    if (keep && state.datasets.some((d) => d.id === keep)) $("g-dataset").value = keep;
    const filter = $("q-dataset"), chosen = filter.value;
    filter.replaceChildren(el("option", { value: "" }, "All datasets"), ...state.datasets.map((d) => el("option", { value: d.id }, d.id)));
    filter.value = chosen;
  }

  async function remove(d) {
    if (!confirm(`Delete the dataset ${d.id}? Its grants go too; workspaces get it no more at their next start.`)) return;
    await call("DELETE", `datasets/${enc(d.id)}`);
    say(`${d.id} deleted`, "success");
    if (state.editing && state.editing.id === d.id) reset();
    await loadDatasets();
  }

  function kindChanged() {
    const s3 = $("f-kind").value === "s3";
    for (const x of document.querySelectorAll(".ls-s3")) x.classList.toggle("d-none", !s3);
    for (const x of document.querySelectorAll(".ls-not-s3")) x.classList.toggle("d-none", s3);
    const help = { host: "A folder under one of the allowed roots (data.roots).", volume: "The name of a Docker volume.",
      pvc: "The name of a PersistentVolumeClaim.", nfs: "server:/export" };
    $("source-help").textContent = help[$("f-kind").value] || "";
  }

  function formValues() {
    const v = {};
    for (const f of FIELDS) v[f] = $(`f-${f}`).value.trim();
    v.tags = v.tags ? v.tags.split(",").map((t) => t.trim()).filter(Boolean) : [];
    if (v.kind === "s3") {
      v.s3 = {};
      for (const f of S3) v.s3[f] = $(`f-${f}`).value.trim();
      v.source = "";
      v.mount_path = state.editing ? String(state.editing.mount_path || "") : "";
    }
    return v;
  }

  function edit(d) {
    state.editing = d;
    for (const f of FIELDS) $(`f-${f}`).value = f === "tags" ? (d.tags || []).join(", ") : d[f] === null || d[f] === undefined ? "" : String(d[f]);
    for (const f of S3) $(`f-${f}`).value = (d.s3 && d.s3[f]) || "";
    $("f-id").readOnly = true;
    $("f-id").classList.add("bg-body-secondary");
    lock(fixed(d));
    $("editor-title").textContent = fixed(d) ? `${d.id} is defined in labspace.yaml (data.datasets): change it there` : `Edit ${d.id}`;
    $("save").textContent = "Save changes";
    kindChanged();
    showCredentials(d);
    $("editor").scrollIntoView({ block: "start" });
  }

  function lock(locked) {
    for (const f of [...FIELDS, ...S3]) if (f !== "id") $(`f-${f}`).disabled = locked;
    $("save").classList.toggle("d-none", locked);
  }

  function reset() {
    state.editing = null;
    lock(false);
    $("editor").reset();
    $("f-id").readOnly = false;
    $("f-id").classList.remove("bg-body-secondary");
    $("editor-title").textContent = "Add a dataset";
    $("save").textContent = "Add dataset";
    kindChanged();
    showCredentials(null);
  }

  // the fields that differ from the dataset being edited (a PATCH changes only those)
  function changes(v, d) {
    const out = {};
    for (const f of FIELDS) {
      if (f === "id") continue;
      const was = f === "tags" ? JSON.stringify(d.tags || []) : d[f] === null || d[f] === undefined ? "" : String(d[f]);
      const now = f === "tags" ? JSON.stringify(v.tags) : v[f];
      if (was !== now) out[f] = v[f];
    }
    if (v.kind === "s3" && JSON.stringify(v.s3) !== JSON.stringify(Object.assign({ endpoint: "", bucket: "", prefix: "", region: "" }, d.s3 || {}))) out.s3 = v.s3;
    return out;
  }

  async function save(ev) {
    ev.preventDefault();
    const v = formValues();
    let d;
    if (state.editing) {
      d = await call("PATCH", `datasets/${enc(state.editing.id)}`, changes(v, state.editing));
    } else {
      for (const f of ["size", "mount_path", "sub_path"]) if (!v[f]) delete v[f];
      d = await call("POST", "datasets", v);
    }
    say(`${d.id} saved`, "success");
    await loadDatasets();
    edit(state.datasets.find((x) => x.id === d.id) || d);
  }

  // -- s3 credentials (write-only: the API says only whether one is set) ---------
  function showCredentials(d) {
    const form = $("credentials");
    form.classList.toggle("d-none", !(d && d.kind === "s3"));
    if (!d || d.kind !== "s3") return;
    const c = d.credentials || {};
    $("credentials-title").textContent = `S3 credentials of ${d.id}`;
    $("credentials-state").textContent = `Read credential: ${c.read ? "set" : "not set"}. Write credential: ${c.write ? "set" : "not set"}` +
      " (a write grant without a write credential gets the read one, and reads only).";
  }

  async function saveCredential(ev) {
    ev.preventDefault();
    const id = state.editing.id, level = $("c-level").value;
    const body = { access_key_id: $("c-key").value.trim(), secret_access_key: $("c-secret").value };
    if ($("c-session").value) body.session_token = $("c-session").value;
    await call("PUT", `datasets/${enc(id)}/credentials/${level}`, body);
    $("credentials").reset();
    say(`The ${level} credential of ${id} is saved`, "success");
    await loadDatasets();
    edit(state.datasets.find((x) => x.id === id));
  }

  async function deleteCredential() {
    const id = state.editing.id, level = $("c-level").value;
    if (!confirm(`Remove the ${level} credential of ${id}?`)) return;
    await call("DELETE", `datasets/${enc(id)}/credentials/${level}`);
    say(`The ${level} credential of ${id} is removed`, "success");
    await loadDatasets();
    edit(state.datasets.find((x) => x.id === id));
  }

  // -- grants ----------------------------------------------------------------
  function reason() {
    const r = $("g-reason").value.trim();
    if (!r) { $("g-reason").focus(); throw new Error("Give a reason for the change: it goes into the audit trail."); }
    return r;
  }

  function grantRow(id, g) {
    const level = el("select", { class: "form-select form-select-sm w-auto", "aria-label": `Level of ${g.subject_type} ${g.subject}` },
      el("option", { value: "read" }, "read"), el("option", { value: "write" }, "write"));
    level.value = g.level;
    level.addEventListener("change", async () => {
      try {
        await call("POST", `datasets/${enc(id)}/grants`, { [g.subject_type]: g.subject, level: level.value, reason: reason() });
        say(`${g.subject_type} ${g.subject} now has ${level.value} access to ${id}`, "success");
      } catch (e) { level.value = g.level; say(e.message, "danger"); }
      await loadGrants();
      loadHolders().catch(() => {});
    });
    return el("tr", { "data-subject": `${g.subject_type}:${g.subject}` },
      cell(el("span", { class: "badge text-bg-light me-2" }, g.subject_type), el("span", { class: "g-subject" }, g.subject)),
      cell(level), cell(g.granted_by || ""), cell(when(g.granted_at)),
      el("td", { class: "ls-actions" }, button("Remove", "btn-outline-danger", async () => {
        await call("DELETE", `datasets/${enc(id)}/grants/${g.subject_type}/${enc(g.subject)}?reason=${enc(reason())}`);
        say(`${g.subject_type} ${g.subject} may use ${id} no more (from their next start)`, "success");
        await loadGrants();
        loadHolders().catch(() => {});  // the badge: running workspaces that still hold it
      })));
  }

  async function loadGrants() {
    loadSubjects().catch((e) => say(e.message, "danger"));
    const id = $("g-dataset").value;
    state.grantsOf = id;
    const body = $("grants-table").tBodies[0];
    if (!id) { body.replaceChildren(el("tr", {}, el("td", { colspan: "5", class: "text-muted" }, "Add a dataset first."))); return; }
    const answer = await call("GET", `datasets/${enc(id)}/grants`);
    const grants = Array.isArray(answer) ? answer : answer.grants || [];
    body.replaceChildren(...(grants.length ? grants.map((g) => grantRow(id, g))
      : [el("tr", {}, el("td", { colspan: "5", class: "text-muted" }, "Nobody may use this dataset yet."))]));
  }

  // every dataset's grants, by subject: what lab-a (or alice) may use (at most MAX_SUBJECT_FETCH datasets)
  const MAX_SUBJECT_FETCH = 200;
  async function loadSubjects() {
    const sets = state.datasets.slice(0, MAX_SUBJECT_FETCH);
    const lists = await Promise.all(sets.map((d) => call("GET", `datasets/${enc(d.id)}/grants`)));
    const bySubject = new Map();
    lists.forEach((grants, i) => {
      for (const g of grants) {
        const key = `${g.subject_type}:${g.subject}`;
        if (!bySubject.has(key)) bySubject.set(key, { g, held: [] });
        bySubject.get(key).held.push([sets[i].id, g.level]);
      }
    });
    const rows = [...bySubject.keys()].sort().map((key) => {
      const { g, held } = bySubject.get(key);
      return el("tr", { "data-subject": key },
        cell(el("span", { class: "badge text-bg-light me-2" }, g.subject_type), g.subject),
        cell(...held.map(([id, level]) => el("span", { class: "me-3 text-nowrap d-inline-block", "data-dataset": id },
          `${id} `, levelBadge(level)))));
    });
    const more = state.datasets.length > sets.length
      ? [el("tr", {}, el("td", { colspan: "2", class: "text-muted" }, `Only the first ${sets.length} datasets are shown here.`))] : [];
    $("subjects-table").tBodies[0].replaceChildren(...(rows.length ? rows
      : [el("tr", {}, el("td", { colspan: "2", class: "text-muted" }, "No grants yet."))]), ...more);
  }

  async function addGrant(ev) {
    ev.preventDefault();
    const id = $("g-dataset").value, type = $("a-type").value, name = $("a-name").value.trim(), level = $("a-level").value;
    if (!id) throw new Error("Add a dataset first.");
    await call("POST", `datasets/${enc(id)}/grants`, { [type]: name, level, reason: reason() });
    say(`${type} ${name} may use ${id} (${level}) from their next start`, "success");
    $("a-name").value = "";
    await loadGrants();
  }

  // -- audit -------------------------------------------------------------------
  function auditQuery(format) {
    const q = new URLSearchParams();
    const add = (k, v) => { if (v) q.set(k, v); };
    add("dataset", $("q-dataset").value);
    add("user", $("q-user").value.trim());
    for (const k of ["since", "until"]) {
      const v = $(`q-${k}`).value;
      if (v) add(k, new Date(`${v}Z`).toISOString());  // the table's times are UTC: so are these
    }
    add("limit", $("q-limit").value);
    if (format) q.set("format", format);
    return `audit?${q}`;
  }

  function shown(value) {
    if (value === null || value === undefined || value === "") return "none";
    return typeof value === "object" ? JSON.stringify(value) : String(value);
  }

  // a dataset event: created (what), deleted, or the fields that changed
  function datasetChange(before, after) {
    if (!before && after) return `created: ${after.kind} ${after.kind === "s3" && after.s3 ? `s3://${after.s3.bucket}/${after.s3.prefix || ""}` : after.source || ""}`;
    if (before && !after) return "deleted";
    const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])];
    const changed = keys.filter((k) => JSON.stringify(before[k]) !== JSON.stringify(after[k]));
    return changed.map((k) => `${k}: ${shown(before[k])} → ${shown(after[k])}`).join("; ") || "no change";
  }

  function change(e) {
    const isObject = (v) => v && typeof v === "object";
    if ((isObject(e.before) || isObject(e.after)) && !Array.isArray(e.before) && !Array.isArray(e.after)) {
      return datasetChange(isObject(e.before) ? e.before : null, isObject(e.after) ? e.after : null);
    }
    if (e.kind === "start") {
      const sets = (e.datasets || []).map((x) => `${x.id} (${x.level})`).join(", ");
      return sets || "no datasets";
    }
    if (e.before === undefined && e.after === undefined) return "";
    return `${shown(e.before)} → ${shown(e.after)}`;
  }

  function who(e) {
    if (e.kind === "start") return `${e.user || ""}${e.server ? ` / ${e.server}` : ""}`;
    return e.subject || e.user || "";
  }

  async function loadAudit() {
    $("audit-csv").href = api + auditQuery("csv");
    const answer = await call("GET", auditQuery());
    const events = Array.isArray(answer) ? answer : answer.events || [];
    const rows = events.map((e) => el("tr", { "data-kind": e.kind || "" },
      el("td", { class: "ls-when" }, when(e.at)), el("td", { class: "ls-short" }, e.kind || ""), cell(e.actor || ""),
      cell(e.dataset || ""), el("td", { class: "ls-short" }, who(e)), cell(change(e)), cell(e.reason || "")));
    $("audit-table").tBodies[0].replaceChildren(...(rows.length ? rows
      : [el("tr", {}, el("td", { colspan: "7", class: "text-muted" }, "Nothing recorded for these filters."))]));
  }

  // -- running workspaces holding revoked grants --------------------------------
  async function loadHolders() {
    const answer = await call("GET", "holders");
    const holders = Array.isArray(answer) ? answer : answer.holders || [];
    $("holders-count").textContent = holders.length ? String(holders.length) : "";
    const rows = holders.map((x) => el("tr", { "data-holder": `${x.user}/${x.server || ""}` },
      cell(x.user), cell(x.server || "(default)"), cell(x.dataset), cell(levelBadge(x.held)), cell(x.now ? levelBadge(x.now) : "none"),
      cell(when(x.started)),
      el("td", { class: "ls-actions" }, button("Stop", "btn-outline-danger", async () => {
        if (!confirm(`Stop ${x.user}'s server${x.server ? ` ${x.server}` : ""}? Unsaved work in it is lost.`)) return;
        say(`Asking the hub to stop ${x.user}'s server…`, "info");
        await call("POST", `holders/${enc(x.user)}/stop`, { server: x.server || "" });
        say(`${x.user}'s server is stopping: its next start gets only the grants held then`, "success");
        await loadHolders();
      }))));
    $("holders-table").tBodies[0].replaceChildren(...(rows.length ? rows
      : [el("tr", {}, el("td", { colspan: "7", class: "text-muted" }, "No running workspace holds a grant it has lost."))]));
  }

  // -- wiring ----------------------------------------------------------------
  const guarded = (fn) => (ev) => fn(ev).catch((e) => say(e.message, "danger"));
  for (const b of document.querySelectorAll("#tabs [data-tab]")) b.addEventListener("click", () => show(b.dataset.tab));
  $("f-kind").addEventListener("change", kindChanged);
  $("editor").addEventListener("submit", guarded(save));
  $("new").addEventListener("click", reset);
  $("credentials").addEventListener("submit", guarded(saveCredential));
  $("c-delete").addEventListener("click", guarded(deleteCredential));
  $("g-dataset").addEventListener("change", guarded(loadGrants));
  $("grant-add").addEventListener("submit", guarded(addGrant));
  $("audit-filter").addEventListener("submit", guarded(async (ev) => { ev.preventDefault(); await loadAudit(); }));
  kindChanged();
  loadDatasets().then(() => show((location.hash || "#datasets").slice(1)))
    .catch((e) => say(`The datasets could not be loaded: ${e.message}`, "danger"));
  loadHolders().catch(() => {});
})();
