// My data: the datasets I may use, where each appears in my workspace, read or write.
"use strict";
(function () {
  const { body, call, el, say, size, levelBadge } = window.labspaceData;
  const list = document.getElementById("datasets");
  const KINDS = { host: "folder", volume: "Docker volume", pvc: "Kubernetes volume", nfs: "NFS share", s3: "S3 object store" };

  function notebook(d) {
    const id = JSON.stringify(d.id);
    return el("pre", { class: "ls-code", "aria-label": "How to open it in a notebook" }, [
      "from labspace.extensions.datasets import filesystem, root",
      "",
      `fs = filesystem(${id})`,
      `fs.ls(root(${id}))  # ${d.url || ""}`,
    ].join("\n"));
  }

  function s3Help(d) {
    return el("div", { class: "mt-3" },
      el("div", { class: "fw-medium small" }, "In a notebook of your workspace"), notebook(d),
      el("div", { class: "small text-muted mt-1" },
        d.level === "write" ? "Your workspace gets a credential that may read and write here."
          : "Your workspace gets a credential that may only read here."));
  }

  function where(d) {
    if (d.kind === "s3") {
      return [el("dt", {}, "Location"), el("dd", {}, el("code", { class: "ds-url" }, d.url || "s3://"))];
    }
    return [el("dt", {}, "In your workspace"), el("dd", {}, el("code", { class: "ds-path" }, d.mount_path || ""))];
  }

  function card(d) {
    const local = body.backend === "local" && d.kind !== "s3" && d.level === "read";
    return el("div", { class: "col" }, el("div", { class: "card dataset-card h-100", "data-dataset": d.id },
      el("div", { class: "card-body" },
        el("div", { class: "d-flex align-items-start gap-2 mb-1" },
          el("h2", { class: "h5 mb-0 me-auto ds-title" }, d.title || d.id), levelBadge(d.level, "flex-none")),
        el("div", { class: "small text-muted mb-2" }, `${d.id} · ${KINDS[d.kind] || d.kind}`),
        d.description ? el("p", { class: "ds-description" }, d.description) : null,
        el("dl", {}, ...where(d), el("dt", {}, "Access"),
          el("dd", {}, d.level === "write" ? "read and write" : "read only",
            local ? el("span", { class: "text-warning-emphasis" }, " (not enforced on this hub: please do not write)") : null),
          d.kind === "s3" && (d.size === null || d.size === undefined) ? null : el("dt", {}, "Size"),
          d.kind === "s3" && (d.size === null || d.size === undefined) ? null : el("dd", { class: "ds-size" }, size(d.size))),
        d.kind === "s3" ? s3Help(d) : null)));
  }

  function empty() {
    return el("div", { class: "col-12" }, el("div", { class: "ls-card ls-empty", id: "empty" },
      el("h2", { class: "h5" }, "You have no datasets yet"),
      el("p", { class: "mb-1" }, "A dataset appears here once an admin of this hub grants it to you or to one of your groups."),
      el("p", { class: "text-muted mb-0" }, "Ask an admin for the datasets you need: say which data, for which project, and whether you need to write to it.")));
  }

  async function load() {
    try {
      const answer = await call("GET", "me/datasets");
      const datasets = Array.isArray(answer) ? answer : answer.datasets || [];
      list.classList.toggle("row-cols-lg-2", datasets.length > 0);
      list.replaceChildren(...(datasets.length ? datasets.map(card) : [empty()]));
    } catch (e) {
      list.replaceChildren();
      say(`Your datasets could not be loaded: ${e.message}`);
    }
  }
  load();
})();
