"""The dashboard's pages: HTML written here, plots and the live trial table drawn by
static/dashboard.js from the JSON API (no inline script: the CSP forbids it).

Pages: the overview (machines x models), a study, a trial, a comparison of two
studies or two machines, and the API's reference.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from html import escape
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse

from tuner.service.service import Service

MAX_INT = 2**31 - 1
router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)


def service(request: Request) -> Service:
    found: Service = request.app.state.service
    return found


# -- formatting ------------------------------------------------------------------------------


def e(value: Any) -> str:
    return escape("" if value is None else str(value))


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def speedup(best: Mapping[str, Any]) -> str:
    if best.get("speedup") is None:
        return "no speedup stated"
    text = f"{best['speedup']:.2f}x"
    ci = best.get("speedup_ci95")
    return text + (f" (95% CI {ci[0]:.2f}-{ci[1]:.2f})" if ci else "")


def when(value: Any) -> str:
    return "-" if value is None else f"{value:%Y-%m-%d %H:%M} UTC"


def config_text(config: Mapping[str, Any]) -> str:
    head = " ".join(str(config[k]) for k in ("backend", "precision") if k in config)
    rest = ", ".join(f"{k}={v}" for k, v in config.items() if k not in ("backend", "precision"))
    return f"{head} ({rest})" if rest else head


def accuracy_text(accuracy: Mapping[str, Any] | None) -> str:
    if not accuracy:
        return "-"
    if "cosine_mean" in accuracy:
        mean, low = accuracy.get("cosine_mean"), accuracy.get("cosine_min")
        return f"cos mean {mean:.4f} min {low:.4f}" if mean is not None and low is not None else "-"
    agreement = accuracy.get("label_agreement")
    return f"labels {agreement:.1%}" if agreement is not None else "-"


def value_text(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, float):
        return f"{value:.6g}"
    return "-" if value is None else str(value)


def table(
    headers: Iterable[str], rows: Iterable[Iterable[str]], cls: str = "", same: Iterable[bool] | None = None
) -> str:
    """Cells are HTML already (escape them with e()); rows whose ``same`` is true get
    class "same" (hidden by "show differences only")."""
    labels = list(headers)
    head = f"<thead><tr>{''.join(f'<th>{h}</th>' for h in labels)}</tr></thead>" if any(labels) else ""
    marks = list(same) if same is not None else []
    cells = [list(row) for row in rows]
    body = "".join(
        ('<tr class="same">' if i < len(marks) and marks[i] else "<tr>")
        + "".join(f"<td>{c}</td>" for c in row)
        + "</tr>"
        for i, row in enumerate(cells)
    )
    if marks and all(marks):
        width = len(cells[0]) if cells else 1
        body += f'<tr class="all-same"><td colspan="{width}">no differences</td></tr>'
    return f'<table class="{cls}">{head}<tbody>{body}</tbody></table>'


def layout(title: str, page: str, body: str, data: Mapping[str, Any] | None = None) -> str:
    attrs = " ".join(f'data-{k}="{e(v)}"' for k, v in (data or {}).items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)} · tuner</title>
<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/static/dashboard.css">
<script src="/static/plotly.min.js" defer></script>
<script src="/static/dashboard.js" defer></script>
</head><body data-page="{page}" {attrs}>
<header><a class="brand" href="/">tuner</a> <nav><a href="/">overview</a> <a href="/api">API</a></nav>
<span class="ro" title="tuner serve never writes to the database">read-only</span></header>
<main>{body}</main>
</body></html>"""


def error_page(status: int, message: str) -> str:
    return layout(
        f"{status}", "error", f'<h1>{status}</h1><p class="error">{e(message)}</p><p><a href="/">overview</a></p>'
    )


def plot(plot_id: str, title: str, note: str = "") -> str:
    return (
        f'<section class="plot-box"><h3>{e(title)}</h3>{note}'
        f'<div id="{plot_id}" class="plot" data-state="loading"></div></section>'
    )


# -- overview ----------------------------------------------------------------------------------


@router.get("/")
def overview(request: Request) -> str:
    data = service(request).overview()
    machines, models, results = data["machines"], data["models"], data["results"]
    cells: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for best in results:
        cells.setdefault((best["machine_id"], best["model_pk"]), []).append(best)
    used_models = [m for m in models if any(k[1] == m["id"] for k in cells)] or models
    rows = []
    for machine in machines:
        stale = (
            f' <span class="badge stale" title="{e(machine["stale_reason"])}">stale</span>' if machine["stale"] else ""
        )
        head = [
            f'<span class="host">{e(machine["hostname"])}</span>{stale}<br><small>{e(machine["fingerprint"])}'
            f" · last seen {when(machine['last_seen'])}</small>",
            f"{e(machine['cpu_model'])}<br><small>{e(' '.join(machine['isa']))}</small>",
            e(machine["cores"]),
        ]
        for model in used_models:
            entries = sorted(
                cells.get((machine["id"], model["id"]), []), key=lambda b: (b["seq_len"], b["batch"], b["objective"])
            )
            parts = []
            for best in entries:
                label = f"seq {best['seq_len']}"
                if best["batch"] != 1:
                    label += f" batch {best['batch']}"
                if best["objective"] != "p50":
                    label += f" {best['objective']}"
                cls = "result stale" if best["stale"] else "result"
                title = (
                    best["stale_reason"] or f"{best['backend']} {best['precision']}, median {ms(best['median_ms'])} ms"
                )
                parts.append(
                    f'<a class="{cls}" href="/studies/{best["study_id"]}" title="{e(title)}">'
                    f"{e(label)}: <b>{e(speedup(best))}</b></a>"
                )
            head.append("<br>".join(parts) or '<span class="none">-</span>')
        rows.append(head)
    headers = ["machine", "CPU", "cores"] + [e(m["model_id"]) for m in used_models]
    options = "".join(
        f'<option value="{m["id"]}">{e(m["hostname"])} #{m["id"]} ({e(m["cpu_model"])})</option>' for m in machines
    )
    second = "".join(
        f'<option value="{m["id"]}"{" selected" if i == 1 else ""}>{e(m["hostname"])} #{m["id"]} '
        f"({e(m['cpu_model'])})</option>"
        for i, m in enumerate(machines)
    )
    compare = (
        (
            f'<form class="compare" method="get" action="/compare/machines">Compare machine '
            f'<select name="a">{options}</select> with <select name="b">{second}</select> '
            f'<button type="submit">compare</button></form>'
        )
        if len(machines) > 1
        else ""
    )
    running = "".join(f'<li><a href="/studies/{sid}">study {sid}</a></li>' for sid in data["running"])
    body = (
        f'<h1>Overview</h1><p class="summary">{len(machines)} machines, {len(models)} models, '
        f"{len(results)} stored winners: the speedup of each over the stock default, with its 95% interval. "
        'A result is <span class="badge stale">stale</span> when its machine has been seen since with other '
        "hardware or library versions.</p>"
        + (f'<section class="running"><h2>Running now</h2><ul>{running}</ul></section>' if running else "")
        + (
            table(headers, rows, "overview")
            if machines
            else "<p>No machine in this database yet: run <code>tuner auto --model M</code> first.</p>"
        )
        + compare
    )
    return layout("overview", "overview", body)


# -- study -------------------------------------------------------------------------------------


@router.get("/studies/{study_id}")
def study(request: Request, study_id: Annotated[int, Path(ge=1, le=MAX_INT)]) -> str:
    svc = service(request)
    s = svc.study(study_id)
    machine = svc.machine(s["machine_id"])
    winner = svc.study_winner(s)
    counts = ", ".join(f"{n} {status}" for status, n in sorted(s["counts"].items(), key=lambda kv: -kv[1]))
    guard = (s["settings"] or {}).get("guard") or {}
    head = (
        f"<h1>{e(s['model_id'])} · seq {s['seq_len']} · batch {s['batch']} · {e(s['objective'])}</h1>"
        f'<p class="summary">study {s["id"]} on <b>{e(machine["hostname"])}</b> ({e(machine["cpu_model"])}, '
        f"{e(machine['cores'])} cores{', stale: ' + e(machine['stale_reason']) if machine['stale'] else ''}) · "
        f'<span id="study-status" class="badge {e(s["status"])}">{e(s["status"])}</span> · '
        f'<span id="study-count">{s["n_trials"]}</span> trials ({e(counts) or "none yet"}) · '
        f"strategy {e((s['settings'] or {}).get('strategy', '-'))} · started {when(s['created'])}</p>"
    )
    if winner:
        metrics = winner["metrics"]
        head += (
            f'<section class="winner"><h2>Winner: trial <a href="/studies/{s["id"]}/trials/{winner["trial_number"]}">'
            f"{winner['trial_number']}</a>, {e(speedup(winner))} over the stock default</h2>"
            f"<p>{e(config_text(winner['config']))}</p><p>median {ms(metrics.get('median_ms'))} ms, "
            f"p90 {ms(metrics.get('p90_ms'))} ms, p99 {ms(metrics.get('p99_ms'))} ms · accuracy "
            f"{e(accuracy_text(metrics.get('accuracy')))} · stock default {ms(winner['default_median_ms'])} ms"
            f"{' · ' + e(metrics['decision']) if metrics.get('decision') else ''}</p></section>"
        )
    others = [
        o for o in svc.studies(model_pk=s["model_pk"], limit=200, with_counts=False)["items"] if o["id"] != s["id"]
    ]
    compare = ""
    if others:
        options = "".join(
            f'<option value="{o["id"]}">study {o["id"]}: {e(o["hostname"])}, seq {o["seq_len"]}, '
            f"batch {o['batch']}, {e(o['objective'])}</option>"
            for o in others
        )
        compare = (
            f'<form class="compare" method="get" action="/compare/studies"><input type="hidden" name="a" '
            f'value="{s["id"]}">Compare with <select name="b">{options}</select> '
            f'<button type="submit">compare</button></form>'
        )
    guard_note = ""
    if guard:
        guard_note = '<p class="note">guard: ' + e(", ".join(f"{k} {v}" for k, v in guard.items())) + "</p>"
    plots = (
        '<div class="plots">'
        + plot("plot-history", "Objective per trial, and the best so far")
        + plot("plot-accuracy", "Latency vs accuracy, per backend and precision", guard_note)
        + plot("plot-pareto", "Latency-throughput Pareto front")
        + plot("plot-importance", "Parameter importance (Optuna, PED-ANOVA)")
        + plot("plot-finalists", "Finalists: speedup over the stock default, 95% interval")
        + "</div>"
    )
    filters = (
        '<form id="trial-filters" class="filters">'
        '<label>status <select name="status"><option value="">any</option></select></label> '
        '<label>backend <select name="backend"><option value="">any</option></select></label> '
        '<label>precision <select name="precision"><option value="">any</option></select></label> '
        '<label>flag <select name="flag"><option value="">any</option><option>none</option><option>unstable'
        "</option><option>outliers</option><option>noisy</option><option>few-samples</option><option>not-settled"
        "</option></select></label> "
        '<label>sort <select name="sort"><option value="number">number</option><option value="-number">number, '
        'newest first</option><option value="value">objective</option><option value="median_ms">median</option>'
        '<option value="p99_ms">p99</option><option value="-throughput">throughput</option><option value="cv">cv'
        "</option></select></label></form>"
    )
    trials_section = (
        f'<section><h2>Trials</h2>{filters}<div id="trial-table" data-state="loading"></div>'
        '<p class="pager"><button id="prev" type="button">previous</button> <span id="page-info"></span> '
        '<button id="next" type="button">next</button></p></section>'
    )
    data = {
        "study": s["id"],
        "status": s["status"],
        "objective": s["objective"],
        "batch": s["batch"],
        "trials": s["n_trials"],
    }
    if winner:
        data["finalists"] = json.dumps(winner["finalists"])
    return layout(f"study {s['id']}", "study", head + compare + plots + trials_section, data)


# -- trial -------------------------------------------------------------------------------------


@router.get("/studies/{study_id}/trials/{number}")
def trial(
    request: Request, study_id: Annotated[int, Path(ge=1, le=MAX_INT)], number: Annotated[int, Path(ge=0, le=MAX_INT)]
) -> str:
    svc = service(request)
    s = svc.study(study_id)
    t = svc.trial(study_id, number)
    others = [
        o for o in svc.studies(model_pk=s["model_pk"], limit=200, with_counts=False)["items"] if o["id"] != s["id"]
    ]
    # The other study most like this one: same machine first, then the nearest length.
    others.sort(key=lambda o: (o["machine_id"] != s["machine_id"], abs(o["seq_len"] - s["seq_len"]), o["id"]))
    compare = (
        f' · <a id="compare-link" href="/compare/studies?a={s["id"]}&amp;b={others[0]["id"]}">compare this '
        f"study with study {others[0]['id']} (seq {others[0]['seq_len']}, {e(others[0]['hostname'])})</a>"
        if others
        else ""
    )
    summary_rows = [
        ("status", f'<span class="badge {e(t["status"])}">{e(t["status"])}</span>'),
        ("reason", e(t["reason"]) or "-"),
        ("configuration", e(config_text(t["config"]))),
        ("objective value", e(value_text(t["value"]))),
        ("median / p90 / p99", f"{ms(t['median_ms'])} / {ms(t['p90_ms'])} / {ms(t['p99_ms'])} ms"),
        ("mean ± stdev", f"{ms(t['mean_ms'])} ± {ms(t['stdev_ms'])} ms (cv {value_text(t['cv'])})"),
        ("samples", e(t["n_samples"])),
        ("accuracy", e(accuracy_text(t["accuracy"])) + (" (below the guard)" if t["accuracy_ok"] is False else "")),
        ("flags", e(", ".join(t["flags"])) or "-"),
        ("throughput", f"{value_text(t['throughput'])} inf/s"),
        ("peak RSS", f"{value_text(t['peak_rss_mb'])} MB"),
        ("started / finished", f"{when(t['started_at'])} / {when(t['finished_at'])}"),
        ("artifact", e(t["artifact"]) or "-"),
    ]
    timings = t["timings"] or {}
    settings = table(
        ["setting", "requested", "effective", ""],
        (
            [
                e(r["setting"]),
                e(value_text(r["requested"])),
                e(value_text(r["effective"])),
                {True: '<span class="ok">✓</span>', False: '<span class="bad">✗ differs</span>', None: ""}[r["match"]],
            ]
            for r in t["settings"]
        ),
        "settings",
    )
    body = (
        f"<h1>Trial {t['number']} · {e(t['backend'])} {e(t['precision'])}</h1>"
        f'<p class="summary"><a href="/studies/{s["id"]}">study {s["id"]}</a>: {e(s["model_id"])}, seq {s["seq_len"]}, '
        f"batch {s['batch']}, {e(s['objective'])} on {e(s['hostname'])}{compare}</p>"
        + table(["", ""], ([k, v] for k, v in summary_rows), "facts")
        + '<div class="plots">'
        + plot("plot-samples", "Sample distribution")
        + plot("plot-sequence", "Every timed call, in order")
        + "</div>"
        + "<section><h2>Requested vs effective settings</h2>"
        + settings
        + "</section>"
        + (
            "<section><h2>Timings</h2>"
            + table(["phase", "value"], ([e(k), e(value_text(v))] for k, v in timings.items()), "facts")
            + "</section>"
            if timings
            else ""
        )
        + f'<section><h2>stderr (tail)</h2><pre class="stderr">{e(t["stderr_tail"]) or "(empty)"}</pre></section>'
        + f"<details><summary>effective settings as the probe reported them</summary><pre>"
        f"{e(json.dumps(t['effective'], indent=2, sort_keys=True))}</pre></details>"
        + f"<details><summary>noise checks</summary><pre>{e(json.dumps(t['noise'], indent=2, sort_keys=True))}"
        f"</pre></details>"
    )
    return layout(f"trial {t['number']} of study {s['id']}", "trial", body, {"study": s["id"], "number": t["number"]})


# -- compare -----------------------------------------------------------------------------------


def _side_label(side: Mapping[str, Any]) -> str:
    machine = side["machine"]
    if side.get("study"):
        st = side["study"]
        return (
            f'{side["label"]}: <a href="/studies/{st["id"]}">study {st["id"]}</a>, {e(machine["hostname"])}, '
            f"seq {st['seq_len']}, batch {st['batch']}, {e(st['objective'])}"
        )
    return f"{side['label']}: {e(machine['hostname'])} #{machine['id']} ({e(machine['cpu_model'])})"


def _winner_cell(best: Mapping[str, Any] | None) -> str:
    if best is None:
        return '<span class="none">no winner</span>'
    link = f"/studies/{best['study_id']}/trials/{best['trial_number']}"
    median = (best["metrics"] or {}).get("median_ms")
    return (
        f'<a href="{link}">{e(speedup(best))}</a><br><small>{e(best["config"].get("backend"))} '
        f"{e(best['config'].get('precision'))}, median {ms(median)} ms</small>"
    )


def _compare_page(data: Mapping[str, Any], title: str) -> str:
    a, b = data["a"], data["b"]
    diff_rows = ([e(d["key"]), e(value_text(d["a"])), e(value_text(d["b"]))] for d in data["machine"])
    machine_table = table(["", "A", "B"], diff_rows, "diff", [d["same"] for d in data["machine"]])
    sections = []
    for row in data["rows"]:
        config = table(
            ["setting", "A", "B"],
            ([e(d["key"]), e(value_text(d["a"])), e(value_text(d["b"]))] for d in row["config"]),
            "diff",
            [d["same"] for d in row["config"]],
        )
        sections.append(
            f'<section class="pair"><h3>{_workload(row, data["kind"])}</h3>'
            + table(["A", "B"], [[_winner_cell(row["a"]), _winner_cell(row["b"])]], "winners")
            + config
            + "</section>"
        )
    body = (
        f'<h1>{e(title)}</h1><p class="summary">{_side_label(a)}<br>{_side_label(b)}</p>'
        '<label class="toggle"><input type="checkbox" id="differences-only" checked> show differences only</label>'
        + '<div class="plots">'
        + plot("plot-compare", "Side by side")
        + "</div>"
        + "<section><h2>Machines</h2>"
        + machine_table
        + "</section>"
        + "<section><h2>Winners and their settings</h2>"
        + ("".join(sections) or "<p>Neither side has a stored winner.</p>")
        + "</section>"
    )
    data_attrs: dict[str, Any] = {"kind": data["kind"]}
    if data["kind"] == "studies":
        data_attrs.update(a=a["study"]["id"], b=b["study"]["id"])
    else:
        data_attrs.update(a=a["machine"]["id"], b=b["machine"]["id"])
    return layout(title, "compare", body, data_attrs)


def _workload(row: Mapping[str, Any], kind: str) -> str:
    if kind == "studies":  # the two winners, whatever their workloads
        return "the two studies' winners"
    return f"{e(row['model_id'])} · seq {row['seq_len']} · batch {row['batch']} · {e(row['objective'])}"


@router.get("/compare/studies")
def compare_studies(
    request: Request, a: Annotated[int, Query(ge=1, le=MAX_INT)], b: Annotated[int, Query(ge=1, le=MAX_INT)]
) -> str:
    data = service(request).compare_studies(a, b)
    return _compare_page(data, f"Study {a} vs study {b}")


@router.get("/compare/machines")
def compare_machines(
    request: Request,
    a: Annotated[int, Query(ge=1, le=MAX_INT)],
    b: Annotated[int, Query(ge=1, le=MAX_INT)],
    model_pk: Annotated[int | None, Query(ge=1, le=MAX_INT)] = None,
) -> str:
    data = service(request).compare_machines(a, b, model_pk)
    return _compare_page(data, f"Machine {a} vs machine {b}")


# -- the API's reference -------------------------------------------------------------------------


@router.get("/api")
def api_reference(request: Request) -> str:
    schema = request.app.openapi()
    sections = []
    for path, methods in schema.get("paths", {}).items():
        for method, op in methods.items():
            params = [
                [
                    f"<code>{e(p['name'])}</code>",
                    e(p.get("in")),
                    e(_type_of(p.get("schema", {}))),
                    "yes" if p.get("required") else "",
                    e(p.get("description", "")),
                ]
                for p in op.get("parameters", [])
            ]
            ok = op.get("responses", {}).get("200", {}).get("content", {}).get("application/json", {})
            returns = _type_of(ok.get("schema", {}))
            sections.append(
                f'<section class="endpoint"><h3><span class="method">{e(method.upper())}</span> '
                f"<code>{e(path)}</code></h3><p>{e(op.get('summary', ''))} → <code>{e(returns)}</code></p>"
                + (table(["parameter", "in", "type", "required", ""], params, "params") if params else "")
                + "</section>"
            )
    body = (
        '<h1>JSON API, version 1</h1><p class="summary">Every endpoint reads; none writes. The schema: '
        '<a href="/openapi.json">/openapi.json</a>. Every field is described in docs/api.md. Errors answer '
        '<code>{"error": "...", "status": N}</code>.</p>' + "".join(sections)
    )
    return layout("API", "api", body)


def _type_of(schema: Mapping[str, Any]) -> str:
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    if "anyOf" in schema:
        return " | ".join(_type_of(s) for s in schema["anyOf"])
    if schema.get("type") == "array":
        return f"list[{_type_of(schema.get('items', {}))}]"
    if "enum" in schema:
        return " | ".join(str(v) for v in schema["enum"])
    return str(schema.get("type", "any"))
