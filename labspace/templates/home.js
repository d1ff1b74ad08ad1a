// Labspace home (included by home.html): start, stop and the start's progress
// through JupyterHub's REST API with the person's login and the page's XSRF
// token (as JupyterHub's own home.js and spawn_pending.html do). Text from
// the hub is set with textContent, never as HTML.
(function () {
  "use strict";
  var base = window.jhdata.base_url;
  var user = window.jhdata.user;
  var xsrf = window.jhdata.xsrf_token;
  var STOP_POLLS = 120; // at most 120 polls of a stopping server (1 s apart)

  function serverPath(name) {
    var u = "users/" + encodeURIComponent(user);
    return name ? u + "/servers/" + encodeURIComponent(name) : u + "/server";
  }

  async function api(method, path, body) {
    var resp = await fetch(base + "api/" + path, {
      method: method,
      credentials: "same-origin",
      headers: { "X-XSRFToken": xsrf, "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    var data = {};
    try {
      data = await resp.json();
    } catch (e) {
      data = {};
    }
    if (!resp.ok) {
      throw new Error(data.message || "The hub answered " + resp.status);
    }
    return { status: resp.status, data: data };
  }

  function part(row, cls) {
    return row.querySelector("." + cls);
  }

  function show(el, on) {
    if (el) el.classList.toggle("d-none", !on);
  }

  function setState(row, state) {
    var badge = part(row, "ls-state");
    badge.className = "ls-state ls-state-" + state;
    badge.textContent = state;
    show(part(row, "ls-open"), state === "running");
    show(part(row, "ls-start"), state === "stopped" || state === "failed");
    show(part(row, "ls-options"), state === "stopped" || state === "failed");
    show(part(row, "ls-stop"), state === "running" || state === "starting");
    show(part(row, "ls-progress"), state === "starting");
    row.querySelectorAll("button").forEach(function (b) {
      b.disabled = state === "stopping";
    });
    if (row.dataset.server === "") hero(state);
  }

  // the big "Start My Server" / "Stop My Server" buttons follow the default workspace
  function hero(state) {
    var startBtn = document.getElementById("start");
    var stopBtn = document.getElementById("stop");
    if (!startBtn || !stopBtn) return;
    var active = state === "running" || state === "starting" || state === "stopping";
    startBtn.textContent = active ? "My Server" : "Start My Server";
    startBtn.setAttribute("href", active ? startBtn.dataset.open : startBtn.dataset.spawn);
    show(stopBtn, state === "running" || state === "starting");
  }

  function fail(row, message) {
    var err = part(row, "ls-error");
    err.textContent = message;
    show(err, true);
  }

  function progress(row, percent, message) {
    var bar = row.querySelector(".progress-bar");
    if (percent !== undefined) bar.style.width = percent + "%";
    if (message) part(row, "ls-progress-message").textContent = message;
  }

  function watch(row) {
    var name = row.dataset.server;
    var source = new EventSource(base + "api/" + serverPath(name) + "/progress?_xsrf=" + encodeURIComponent(xsrf));
    setState(row, "starting");
    row.dataset.progressEvents = "0";
    source.onmessage = function (e) {
      var evt = JSON.parse(e.data);
      row.dataset.progressEvents = String(Number(row.dataset.progressEvents) + 1);
      progress(row, evt.progress, evt.message);
      if (evt.ready) {
        source.close();
        if (evt.url) part(row, "ls-open").setAttribute("href", evt.url);
        setState(row, "running");
      } else if (evt.failed) {
        source.close();
        if (row.dataset.stopping === "1") return; // the person stopped it: not a failure
        setState(row, "failed");
        fail(row, evt.message || "The workspace did not start");
      }
    };
    source.onerror = function () {
      source.close();
      refresh(row);
    };
  }

  async function refresh(row) {
    // the stream ended without ready/failed: ask the hub where the server is
    try {
      var r = await api("GET", "users/" + encodeURIComponent(user));
      var s = (r.data.servers || {})[row.dataset.server];
      setState(row, !s ? "stopped" : s.ready ? "running" : s.pending === "spawn" ? "starting" : "stopped");
    } catch (e) {
      fail(row, e.message);
    }
  }

  async function start(row, options) {
    show(part(row, "ls-error"), false);
    progress(row, 0, "Asking the hub to start it…");
    setState(row, "starting");
    try {
      await api("POST", serverPath(row.dataset.server), options);
      watch(row);
    } catch (e) {
      setState(row, "stopped");
      fail(row, e.message);
    }
  }

  async function stop(row) {
    show(part(row, "ls-error"), false);
    row.dataset.stopping = "1";
    setState(row, "stopping");
    try {
      var r = await api("DELETE", serverPath(row.dataset.server));
      for (var i = 0; r.status === 202 && i < STOP_POLLS; i++) {
        await new Promise(function (ok) { setTimeout(ok, 1000); });
        var u = await api("GET", "users/" + encodeURIComponent(user));
        if (!(u.data.servers || {})[row.dataset.server]) break;
      }
      setState(row, "stopped");
    } catch (e) {
      setState(row, "running");
      fail(row, e.message);
    } finally {
      row.dataset.stopping = "";
    }
  }

  function hook(row) {
    part(row, "ls-start").addEventListener("click", function () {
      start(row, JSON.parse(row.dataset.options || "{}"));
    });
    part(row, "ls-stop").addEventListener("click", function () {
      stop(row);
    });
    if (row.querySelector(".ls-state-starting")) watch(row);
  }

  document.querySelectorAll("tr.ls-server").forEach(hook);
  var stopHero = document.getElementById("stop");
  var defaultRow = document.querySelector('tr.ls-server[data-server=""]');
  if (stopHero && defaultRow) {
    stopHero.addEventListener("click", function () {
      stop(defaultRow);
    });
  }

  var form = document.getElementById("ls-new-server");
  if (form) {
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      var name = document.getElementById("ls-new-name").value.trim();
      var select = document.getElementById("ls-new-profile");
      var options = select ? { profile: select.value } : {};
      var existing = document.querySelector('tr.ls-server[data-server="' + CSS.escape(name) + '"]');
      if (existing) {
        fail(form, "You already have a workspace called " + name);
        show(part(form, "ls-error"), true);
        return;
      }
      var template = document.querySelector("tr.ls-server");
      var row = template.cloneNode(true);
      row.dataset.server = name;
      row.dataset.options = JSON.stringify(options);
      part(row, "ls-server-label").textContent = name;
      part(row, "ls-time").textContent = "never";
      row.cells[1].textContent = select ? select.options[select.selectedIndex].text : row.cells[1].textContent;
      part(row, "ls-open").setAttribute("href", base.replace(/hub\/$/, "") + "user/" + encodeURIComponent(user) + "/" + encodeURIComponent(name) + "/");
      show(part(row, "ls-error"), false);
      template.parentNode.appendChild(row);
      hook(row);
      show(part(form, "ls-error"), false);
      start(row, options);
      form.reset();
    });
  }

  // last activity as "5 minutes ago"
  var rtf = window.Intl && Intl.RelativeTimeFormat ? new Intl.RelativeTimeFormat(undefined, { numeric: "auto" }) : null;
  document.querySelectorAll(".ls-time").forEach(function (el) {
    var t = Date.parse(el.dataset.time);
    if (!el.dataset.time || isNaN(t) || !rtf) return;
    var minutes = Math.round((t - Date.now()) / 60000);
    el.textContent = Math.abs(minutes) < 60 ? rtf.format(minutes, "minute")
      : Math.abs(minutes) < 2880 ? rtf.format(Math.round(minutes / 60), "hour")
      : rtf.format(Math.round(minutes / 1440), "day");
  });
  window._labspace_home_loaded = true;
})();
