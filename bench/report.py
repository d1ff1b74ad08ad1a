"""``bench/results/spawn.md`` from ``spawn.json``: the issue's table with the warm
rows, CPU per start, click to usable and first cell, the targets, load, phases.

    python bench/report.py [bench/results/spawn.json]   # rewrites spawn.md
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from figures import TARGETS, fmt, ratio, spread, summary, verdict  # noqa: E402

NAMES = {"plain": "plain JupyterHub", "labspace": "Labspace", "labspace-warm": "Labspace warm"}


def hub_name(label: str) -> str:
    kind, backend = label.split("/")
    return f"{NAMES.get(kind, kind)}, {backend}"


def scenario_rows(scenario: str, sc: dict) -> tuple[list[str], dict]:
    """Table rows of one scenario and its figures per hub."""
    figs = {}
    for label, turns in sc["hubs"].items():
        times = [t for turn in turns for t in turn["times"]]
        s = summary(times)
        per_start = [
            turn["cpu"]["start"]["critical"] / max(1, len(turn["times"])) for turn in turns
        ]
        refill = [
            turn["cpu"]["refill"]["pool"] / max(1, len(turn["times"]))
            for turn in turns
            if "refill" in turn["cpu"]
        ]
        s["cpu_per_start"] = round(statistics.median(per_start), 2) if per_start else None
        s["refill_per_start"] = round(statistics.median(refill), 2) if refill else None
        s["round_p95"] = [summary(turn["times"])["p95"] for turn in turns]
        s["warm_claims"] = sum(t.get("pool", {}).get("claimed", 0) for t in turns)
        s["busy_share"] = [t["busy_share"] for t in turns]
        figs[label] = s
    rows = []
    for label, s in figs.items():
        base = figs.get("plain/" + label.split("/")[1], {})
        plain = label.startswith("plain/")
        r50 = "" if plain else fmt(ratio(s["p50"], base.get("p50")))
        r95 = "" if plain else fmt(ratio(s["p95"], base.get("p95")))
        rows.append(
            f"| {scenario} | {hub_name(label)} | {s['ready']}/{s['total']} | {fmt(s['p50'])} | "
            f"{fmt(s['p95'])} | {spread(s)} | {r50} / {r95} | {fmt(s['cpu_per_start'])} | "
            f"{fmt(s['refill_per_start'])} |"
        )
    return rows, figs


def browser_rows(browser: dict) -> tuple[list[str], dict]:
    figs, rows = {}, []
    for label, runs in browser.get("hubs", {}).items():
        click = summary([r.get("click_to_usable") for r in runs])
        cell = summary([r.get("first_cell") for r in runs])
        figs[label] = {"click": click, "cell": cell}
        rows.append(
            f"| {hub_name(label)} | {click['ready']}/{click['total']} | {fmt(click['p50'])} | "
            f"{fmt(click['p95'])} | {spread(click)} | {fmt(cell['p50'])} | {spread(cell)} |"
        )
    return rows, figs


def browser_medians(browser: dict) -> dict:
    """Per hub: median lab page (its request to the launcher) and first cell, s."""
    out = {}
    for label, runs in browser.get("hubs", {}).items():
        page = [r["lab_page"]["launcher"] for r in runs if "lab_page" in r]
        cell = [r["first_cell"] for r in runs if r.get("first_cell") is not None]
        out[label] = {
            "lab_page": statistics.median(page) if page else None,
            "first_cell": statistics.median(cell) if cell else None,
        }
    return out


def target_rows(backend: str, figs: dict, bfigs: dict, class_key: str) -> list[str]:
    rows = []
    for kind in ("labspace-warm", "labspace", "plain"):
        label = f"{kind}/{backend}"
        name = hub_name(label)
        if label in bfigs:
            b = TARGETS[("click to usable p50 s", backend)]
            v = bfigs[label]["click"]["p50"]
            rows.append(f"| click to usable p50 ≤ {b} s | {name} | {fmt(v)} | {verdict(v, b)} |")
            b = TARGETS[("first cell s", backend)]
            v = bfigs[label]["cell"]["p50"]
            rows.append(f"| first cell p50 ≤ {b} s | {name} | {fmt(v)} | {verdict(v, b)} |")
        cls = figs.get(class_key, {}).get(label)
        if cls:
            b = TARGETS[("class of 20 p95 s", backend)]
            ok = cls["ready"] == cls["total"]
            rows.append(
                f"| class: all ready, p95 ≤ {b} s | {name} | {cls['ready']}/{cls['total']}, "
                f"{fmt(cls['p95'])} | {verdict(cls['p95'], b, ok)} |"
            )
        one = figs.get("1 user", {}).get(label)
        if one:
            b = TARGETS[("CPU per start s", backend)]
            v = one["cpu_per_start"]
            rows.append(f"| CPU per start ≤ {b} CPU-s | {name} | {fmt(v)} | {verdict(v, b)} |")
    return rows


def warm_lines(result: dict) -> list[str]:
    """Per warm hub and scenario: starts served by the pool, cold for want of a
    member, and how long the pool took to refill after a turn."""
    lines = []
    for res in result["backends"].values():
        for scen, sc in res.get("scenarios", {}).items():
            for label, turns in sc["hubs"].items():
                pools = [t["pool"] for t in turns if "pool" in t]
                if not pools:
                    continue
                starts = sum(len(t["times"]) for t in turns)
                refill = [p["refill_s"] for p in pools]
                lines.append(
                    f"- {label}, {scen}: {sum(p['claimed'] for p in pools)} of {starts} starts "
                    f"from the pool, {sum(p['empty'] for p in pools)} cold (pool empty); full "
                    f"before every turn: {all(p['full_before'] for p in pools)}; refilled in "
                    f"{fmt(min(refill))}–{fmt(max(refill))} s after a turn"
                )
    return lines


def load_lines(result: dict) -> list[str]:
    lines = []
    for backend, res in result["backends"].items():
        for scen, sc in res.get("scenarios", {}).items():
            la0, la1 = sc["load_before"]["loadavg"], sc["load_after"]["loadavg"]
            lines.append(
                f"- {backend}, {scen}: load average {la0[0]}/{la0[1]}/{la0[2]} before, "
                f"{la1[0]}/{la1[1]}/{la1[2]} after; machine busy {fmt(sc['busy_share'] * 100, 0)}% "
                f"of both cores over the scenario ({sc['rounds']} rounds, orders "
                f"{'; '.join(' → '.join(o) for o in sc['order'][:3])}…)"
            )
        idle = res.get("idle_cpu_per_s", {})
        lines.append(
            f"- {backend}, at rest before the scenarios: hub trees use "
            + ", ".join(f"{k} {v} CPU-s/s" for k, v in idle.items() if "/" in k)
            + f"; machine busy {fmt((idle.get('machine_busy_share') or 0) * 100, 0)}%"
        )
    return lines


def markdown(result: dict) -> str:
    m = result["machine"]
    out = [
        "# Spawn to ready: plain JupyterHub, Labspace, Labspace warm",
        "",
        f"{m['arch']}, {m['cores']} cores, {m['memory_gib']} GiB, Python {m['python']}, "
        f"kernel {m['kernel']}; {result['date']}. All hubs of a backend up at once, taking "
        "turns start by start (order rotated each round); a warm hub's pool full before "
        "each turn. Times: POST of the start to the first 200 through the proxy. CPU: the "
        "hub's process tree (+ containers' cgroups and Docker's daemons on docker) from the "
        "POST to 1 s after ready, per start; refill: the pool's members and fork server "
        "until the pool is full again, per start (paid ahead, off the critical path). "
        "Ratio: p50 / p95 over plain JupyterHub on the same backend, same run.",
        "",
        "| scenario | hub | ready | p50 s | p95 s | spread: min–max (IQR) | ratio to plain "
        "p50 / p95 | CPU-s per start | refill CPU-s per start |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    all_figs: dict = {}
    for backend, res in result["backends"].items():
        figs = {}
        for scen, sc in res.get("scenarios", {}).items():
            rows, figs[scen] = scenario_rows(scen, sc)
            out += rows
        all_figs[backend] = figs
    bfig_all = {}
    if any("browser" in r for r in result["backends"].values()):
        out += [
            "",
            "## Click to usable and first cell (Chromium)",
            "",
            "Click to usable: from pressing Start on the hub's home page (after signing in) "
            "to JupyterLab's launcher visible, "
            + (
                "one browser profile per hub (a returning person: JupyterLab's assets cached). "
                if any(r.get("browser", {}).get("cached") for r in result["backends"].values())
                else "a fresh browser profile each time (nothing cached). "
            )
            + "First "
            "cell: from the launcher visible to the output of `1+1` shown (open a notebook "
            "from the launcher, type, Shift+Enter).",
            "",
            "| hub | usable | click to usable p50 s | p95 s | spread | first cell p50 s "
            "| first cell spread |",
            "|---|---|---|---|---|---|---|",
        ]
        for res in result["backends"].values():
            if "browser" in res:
                rows, bf = browser_rows(res["browser"])
                out += rows
                bfig_all.update(bf)
    out += ["", "## Targets", "", "| target | hub | measured | verdict |", "|---|---|---|---|"]
    for backend, figs in all_figs.items():
        class_key = next((k for k in figs if k.startswith("class")), "")
        out += target_rows(backend, figs, bfig_all, class_key)
    warm = warm_lines(result)
    if warm:
        out += ["", "## Warm pools", ""] + warm
    out += ["", "## Load", ""] + load_lines(result)
    la0, la1 = result["load_start"]["loadavg"], result.get("load_end", {}).get("loadavg")
    out.append(f"- whole run: load average {la0} at the start, {la1} at the end")
    for backend, why in result.get("failed", {}).items():
        out += ["", f"**{backend}: not measured** ({why.splitlines()[0]})"]
    for backend, res in result["backends"].items():
        if res.get("phases"):
            import phases

            out += ["", f"## Phases of a start, {backend}", ""]
            out += phases.table(res["phases"], browser_medians(res.get("browser", {})))
            if res["phases"].get("note"):
                out += ["", f"Note: {res['phases']['note']}."]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    import json

    path = Path(sys.argv[1] if len(sys.argv) > 1 else "bench/results/spawn.json")
    path.with_suffix(".md").write_text(markdown(json.loads(path.read_text())))
