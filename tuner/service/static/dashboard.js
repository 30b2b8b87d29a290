// tuner serve: plots and the live trial table, drawn from the JSON API (/api/v1).
// Served from the package with Plotly's own bundle; no inline script (the CSP forbids it).
"use strict";

(function () {
  const body = document.body;
  const page = body.dataset.page;
  const PLOT_CONFIG = { responsive: true, displaylogo: false };
  const POLL_MS = 5000;

  function api(path) {
    return fetch("/api/v1" + path, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) {
          return response.json().then(function (err) { throw new Error(err.error || response.statusText); });
        }
        return response.json();
      });
  }

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(function ([k, v]) {
      if (v === null || v === undefined) return;
      if (k === "text") node.textContent = v; else node.setAttribute(k, v);
    });
    (children || []).forEach(function (child) {
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }

  function draw(id, traces, layout) {
    const target = document.getElementById(id);
    if (!target) return;
    const base = {
      height: 320, margin: { l: 60, r: 20, t: 10, b: 50 }, legend: { orientation: "h", y: -0.25 },
      paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "#fafbfc", font: { size: 12 },
    };
    target.classList.remove("empty");
    target.textContent = "";
    window.Plotly.react(target, traces, Object.assign(base, layout || {}), PLOT_CONFIG);
    target.dataset.state = "rendered";
  }

  function empty(id, text) {
    const target = document.getElementById(id);
    if (!target) return;
    target.textContent = text;
    target.classList.add("empty");
    target.dataset.state = "empty";
  }

  function failed(id, error) {
    const target = document.getElementById(id);
    if (!target) return;
    target.textContent = "could not load: " + error.message;
    target.classList.add("empty");
    target.dataset.state = "error";
  }

  function fmt(value, digits) {
    if (value === null || value === undefined) return "-";
    return typeof value === "number" ? value.toFixed(digits === undefined ? 3 : digits) : String(value);
  }

  function accuracyText(acc) {
    if (!acc) return "-";
    if (acc.cosine_mean !== undefined && acc.cosine_mean !== null) {
      return "cos " + fmt(acc.cosine_mean, 4) + " / " + fmt(acc.cosine_min, 4);
    }
    if (acc.label_agreement !== undefined && acc.label_agreement !== null) {
      return "labels " + (100 * acc.label_agreement).toFixed(1) + "%";
    }
    return "-";
  }

  // -- study --------------------------------------------------------------------------------

  function studyPage() {
    const studyId = body.dataset.study;
    const state = { series: null, offset: 0, limit: 50, lastNumber: -1, status: body.dataset.status };

    function groups(s) {
      const found = {};
      s.number.forEach(function (n, i) {
        const key = (s.backend[i] || "?") + " " + (s.precision[i] || "");
        (found[key] = found[key] || []).push(i);
      });
      return found;
    }

    function drawHistory(s) {
      if (!s.number.length) { empty("plot-history", "no trials yet"); return; }
      const ok = [], other = [];
      s.number.forEach(function (n, i) { if (s.value[i] !== null) (s.status[i] === "ok" ? ok : other).push(i); });
      const pick = function (idx, col) { return idx.map(function (i) { return s[col][i]; }); };
      const text = function (idx) {
        return idx.map(function (i) { return "trial " + s.number[i] + ": " + s.status[i] + ", " + s.backend[i] + " " + s.precision[i]; });
      };
      draw("plot-history", [
        { x: pick(ok, "number"), y: pick(ok, "value"), text: text(ok), mode: "markers", type: "scatter", name: "ok",
          marker: { color: "#1f77b4", size: 7 } },
        { x: pick(other, "number"), y: pick(other, "value"), text: text(other), mode: "markers", type: "scatter",
          name: "not eligible (rejected, pruned, ...)", marker: { color: "#bbb", size: 6, symbol: "x" } },
        { x: s.number, y: s.best_so_far, mode: "lines", type: "scatter", name: "best so far",
          line: { shape: "hv", color: "#d62728", width: 2 } },
      ], { xaxis: { title: { text: "trial" } }, yaxis: { title: { text: s.objective + " (" + s.unit + ")" } } });
    }

    function drawAccuracy(s) {
      const traces = [];
      const g = groups(s);
      Object.keys(g).sort().forEach(function (key) {
        const idx = g[key].filter(function (i) { return s.accuracy[i] !== null && s.median_ms[i] !== null; });
        if (!idx.length) return;
        traces.push({
          x: idx.map(function (i) { return s.median_ms[i]; }), y: idx.map(function (i) { return s.accuracy[i]; }),
          text: idx.map(function (i) { return "trial " + s.number[i] + " (" + s.status[i] + ")"; }),
          mode: "markers", type: "scatter", name: key, marker: { size: 8 },
        });
      });
      if (!traces.length) { empty("plot-accuracy", "no trial has both a latency and an accuracy yet"); return; }
      const layout = { xaxis: { title: { text: "median latency (ms)" } }, yaxis: { title: { text: s.accuracy_measure } } };
      // Keep the guard inside the plot, with a margin around it and the points.
      const ys = s.accuracy.filter(function (v) { return v !== null; }).concat(s.guard !== null ? [s.guard] : []);
      const low = Math.min.apply(null, ys), high = Math.max.apply(null, ys), pad = Math.max((high - low) * 0.1, 1e-4);
      layout.yaxis.range = [low - pad, high + pad];
      if (s.guard !== null) {
        layout.shapes = [{ type: "line", xref: "paper", x0: 0, x1: 1, y0: s.guard, y1: s.guard,
          line: { color: "#d62728", dash: "dash", width: 1.5 } }];
        layout.annotations = [{ xref: "paper", x: 1, y: s.guard, text: "guard " + s.guard, showarrow: false,
          yanchor: "bottom", xanchor: "right", font: { color: "#d62728" } }];
      }
      draw("plot-accuracy", traces, layout);
    }

    function drawPareto(s, front) {
      const all = [];
      s.number.forEach(function (n, i) { if (s.status[i] === "ok" && s.median_ms[i] !== null && s.throughput[i] !== null) all.push(i); });
      if (!all.length) { empty("plot-pareto", "no ok trial yet"); return; }
      const onFront = front.trials.slice().sort(function (a, b) { return a.median_ms - b.median_ms; });
      const throughput = function (t) { return t.throughput !== null ? t.throughput : 1000 * Number(body.dataset.batch) / t.median_ms; };
      draw("plot-pareto", [
        { x: all.map(function (i) { return s.median_ms[i]; }), y: all.map(function (i) { return s.throughput[i]; }),
          text: all.map(function (i) { return "trial " + s.number[i]; }), mode: "markers", type: "scatter",
          name: "ok trials", marker: { color: "#9ab", size: 7 } },
        { x: onFront.map(function (t) { return t.median_ms; }), y: onFront.map(throughput),
          text: onFront.map(function (t) { return "trial " + t.number + ": " + t.backend + " " + t.precision; }),
          mode: "lines+markers", type: "scatter", name: front.computed ? "Pareto front" : "front not stored",
          line: { shape: "hv", color: "#2ca02c" }, marker: { size: 10, color: "#2ca02c" } },
      ], { xaxis: { title: { text: "median latency (ms)" } }, yaxis: { title: { text: "throughput (inf/s)" } } });
    }

    function drawImportance(imp) {
      if (!imp.available) { empty("plot-importance", imp.reason); return; }
      const names = Object.keys(imp.importances).reverse();
      draw("plot-importance", [{
        type: "bar", orientation: "h", x: names.map(function (k) { return imp.importances[k]; }), y: names,
        marker: { color: "#1f77b4" }, name: "importance",
      }], { margin: { l: 200, r: 20, t: 10, b: 40 }, xaxis: { title: { text: "share of the objective's variance (" + imp.n_trials + " trials)" } } });
    }

    function drawFinalists() {
      const finalists = JSON.parse(body.dataset.finalists || "[]").filter(function (f) { return f.speedup !== null; });
      if (!finalists.length) { empty("plot-finalists", "no finalists re-measured for this study (yet)"); return; }
      draw("plot-finalists", [{
        type: "scatter", mode: "markers", name: "speedup",
        x: finalists.map(function (f) { return "trial " + f.trial; }), y: finalists.map(function (f) { return f.speedup; }),
        error_y: { type: "data", symmetric: false,
          array: finalists.map(function (f) { return f.high !== null ? f.high - f.speedup : 0; }),
          arrayminus: finalists.map(function (f) { return f.low !== null ? f.speedup - f.low : 0; }) },
        marker: { size: 10, color: finalists.map(function (f) { return f.significant ? "#2ca02c" : "#999"; }) },
      }], { xaxis: { type: "category", title: { text: "finalist" } }, yaxis: { title: { text: "speedup (x)" }, rangemode: "tozero" },
        shapes: [{ type: "line", xref: "paper", x0: 0, x1: 1, y0: 1, y1: 1, line: { color: "#d62728", dash: "dot" } }] });
    }

    function fillFilters(s) {
      const form = document.getElementById("trial-filters");
      const options = { status: s.status, backend: s.backend, precision: s.precision };
      Object.keys(options).forEach(function (name) {
        const select = form.elements[name];
        const have = new Set(Array.from(select.options).map(function (o) { return o.value; }));
        Array.from(new Set(options[name].filter(function (v) { return v; }))).sort().forEach(function (v) {
          if (!have.has(v)) select.appendChild(el("option", { value: v, text: v }));
        });
      });
    }

    function query() {
      const form = document.getElementById("trial-filters");
      const params = new URLSearchParams();
      ["status", "backend", "precision", "flag", "sort"].forEach(function (name) {
        const v = form.elements[name].value;
        if (v) params.set(name, v);
      });
      params.set("limit", state.limit);
      params.set("offset", state.offset);
      return params.toString();
    }

    function renderTable(pageData) {
      const holder = document.getElementById("trial-table");
      const head = ["#", "status", "backend", "precision", "objective", "median", "p90", "p99", "cv", "accuracy", "flags", "reason / settings"];
      const rows = pageData.items.map(function (t) {
        const settings = Object.entries(t.config).filter(function ([k]) { return k !== "backend" && k !== "precision"; })
          .map(function ([k, v]) { return k + "=" + v; }).join(" ");
        return el("tr", { class: "status-" + t.status }, [
          el("td", {}, [el("a", { href: "/studies/" + studyId + "/trials/" + t.number, text: String(t.number) })]),
          el("td", {}, [el("span", { class: "badge " + t.status, text: t.status })]),
          el("td", { text: t.backend || "-" }), el("td", { text: t.precision || "-" }),
          el("td", { text: fmt(t.value) }), el("td", { text: fmt(t.median_ms) }), el("td", { text: fmt(t.p90_ms) }),
          el("td", { text: fmt(t.p99_ms) }), el("td", { text: fmt(t.cv) }), el("td", { text: accuracyText(t.accuracy) }),
          el("td", { text: t.flags.join(", ") || "-" }),
          el("td", { class: "detail", text: t.reason ? t.reason : settings }),
        ]);
      });
      const tableNode = el("table", { class: "trials" }, [
        el("thead", {}, [el("tr", {}, head.map(function (h) { return el("th", { text: h }); }))]),
        el("tbody", {}, rows),
      ]);
      holder.textContent = "";
      holder.appendChild(tableNode);
      holder.dataset.state = "rendered";
      const last = Math.min(pageData.offset + pageData.items.length, pageData.total);
      document.getElementById("page-info").textContent = pageData.total
        ? (pageData.offset + 1) + "-" + last + " of " + pageData.total : "no trial matches";
      document.getElementById("prev").disabled = pageData.offset === 0;
      document.getElementById("next").disabled = last >= pageData.total;
    }

    function loadTable() {
      return api("/studies/" + studyId + "/trials?" + query()).then(renderTable).catch(function (error) {
        document.getElementById("trial-table").textContent = "could not load the trials: " + error.message;
      });
    }

    function drawAll(s) {
      drawHistory(s);
      drawAccuracy(s);
      return api("/studies/" + studyId + "/pareto").then(function (front) { drawPareto(s, front); })
        .catch(function (error) { failed("plot-pareto", error); });
    }

    function loadImportance() {
      return api("/studies/" + studyId + "/importance").then(drawImportance)
        .catch(function (error) { failed("plot-importance", error); });
    }

    // A running study: ask for trials after the last one seen; append, redraw.
    function appendTrials(items) {
      const s = state.series;
      const maximize = s.direction === "maximize";
      items.forEach(function (t) {
        let best = s.best_so_far.length ? s.best_so_far[s.best_so_far.length - 1] : null;
        if (t.status === "ok" && t.value !== null && (best === null || (maximize ? t.value > best : t.value < best))) best = t.value;
        const acc = t.accuracy ? t.accuracy[s.accuracy_measure] : null;
        s.number.push(t.number); s.status.push(t.status); s.value.push(t.value); s.median_ms.push(t.median_ms);
        s.throughput.push(t.throughput !== null ? t.throughput : (t.median_ms ? 1000 * Number(body.dataset.batch) / t.median_ms : null));
        s.accuracy.push(acc === undefined ? null : acc); s.accuracy_ok.push(t.accuracy_ok);
        s.backend.push(t.backend); s.precision.push(t.precision); s.best_so_far.push(best);
        state.lastNumber = Math.max(state.lastNumber, t.number);
      });
    }

    function poll() {
      if (state.status !== "running") return;
      Promise.all([
        api("/studies/" + studyId + "/trials?after=" + state.lastNumber + "&limit=500"),
        api("/studies/" + studyId),
      ]).then(function ([fresh, study]) {
        document.getElementById("study-count").textContent = study.n_trials;
        const badge = document.getElementById("study-status");
        badge.textContent = study.status;
        badge.className = "badge " + study.status;
        state.status = study.status;
        if (fresh.items.length) {
          appendTrials(fresh.items);
          fillFilters(state.series);
          drawAll(state.series);
          loadImportance();
          loadTable();
        }
      }).catch(function () { /* the next poll retries */ }).finally(function () {
        if (state.status === "running") window.setTimeout(poll, POLL_MS);
      });
    }

    document.getElementById("trial-filters").addEventListener("change", function () { state.offset = 0; loadTable(); });
    document.getElementById("prev").addEventListener("click", function () {
      state.offset = Math.max(0, state.offset - state.limit); loadTable();
    });
    document.getElementById("next").addEventListener("click", function () { state.offset += state.limit; loadTable(); });

    drawFinalists();
    loadTable();
    loadImportance();
    api("/studies/" + studyId + "/series").then(function (s) {
      state.series = s;
      state.lastNumber = s.number.length ? s.number[s.number.length - 1] : -1;
      if (s.sampled) {
        document.getElementById("plot-history").insertAdjacentElement("beforebegin",
          el("p", { class: "note", text: "Plots show " + s.number.length + " of " + s.total + " trials (an even sample plus every improvement)." }));
      }
      fillFilters(s);
      return drawAll(s);
    }).catch(function (error) {
      ["plot-history", "plot-accuracy", "plot-pareto"].forEach(function (id) { failed(id, error); });
    }).finally(function () {
      if (state.status === "running") window.setTimeout(poll, POLL_MS);
    });
  }

  // -- trial --------------------------------------------------------------------------------

  function trialPage() {
    api("/studies/" + body.dataset.study + "/trials/" + body.dataset.number).then(function (t) {
      const samples = t.samples_ms.filter(function (v) { return v !== null; });
      if (!samples.length) {
        empty("plot-samples", "no samples: the trial did not time any call (" + t.status + ")");
        empty("plot-sequence", "no samples");
        return;
      }
      const median = t.median_ms;
      const line = median === null ? [] : [{ type: "line", yref: "paper", y0: 0, y1: 1, x0: median, x1: median,
        line: { color: "#d62728", dash: "dash" } }];
      draw("plot-samples", [{ type: "histogram", x: samples, nbinsx: 40, name: "calls", marker: { color: "#1f77b4" } }],
        { xaxis: { title: { text: "latency (ms)" } }, yaxis: { title: { text: "calls" } }, shapes: line });
      draw("plot-sequence", [{ type: "scatter", mode: "markers", x: samples.map(function (_, i) { return i; }), y: samples,
        name: "call", marker: { size: 4, color: "#1f77b4" } }],
        { xaxis: { title: { text: "call" } }, yaxis: { title: { text: "latency (ms)" } } });
    }).catch(function (error) { failed("plot-samples", error); failed("plot-sequence", error); });
  }

  // -- compare ------------------------------------------------------------------------------

  function comparePage() {
    const toggle = document.getElementById("differences-only");
    const apply = function () { body.classList.toggle("differences-only", toggle.checked); };
    toggle.addEventListener("change", apply);
    apply();
    const kind = body.dataset.kind;
    api("/compare/" + kind + "?a=" + body.dataset.a + "&b=" + body.dataset.b).then(function (data) {
      if (kind === "studies") {
        const keys = [];
        [data.a, data.b].forEach(function (side) {
          side.backends.forEach(function (b) { const k = b.backend + " " + b.precision; if (!keys.includes(k)) keys.push(k); });
        });
        if (!keys.length) { empty("plot-compare", "neither study has an ok trial"); return; }
        const unit = data.a.study.objective === "throughput" ? "inf/s" : "ms";
        draw("plot-compare", [data.a, data.b].map(function (side) {
          const byKey = {};
          side.backends.forEach(function (b) { byKey[b.backend + " " + b.precision] = b.value; });
          return { type: "bar", name: side.label + ": study " + side.study.id + " (seq " + side.study.seq_len + ")",
            x: keys, y: keys.map(function (k) { return byKey[k] === undefined ? null : byKey[k]; }) };
        }), { barmode: "group", yaxis: { title: { text: "best " + data.a.study.objective + " per backend (" + unit + ")" } } });
        return;
      }
      const rows = data.rows.filter(function (r) { return (r.a && r.a.speedup !== null) || (r.b && r.b.speedup !== null); });
      if (!rows.length) { empty("plot-compare", "neither machine has a stored winner with a speedup"); return; }
      const labels = rows.map(function (r) { return r.model_id + " seq " + r.seq_len + (r.batch !== 1 ? " b" + r.batch : "") + " " + r.objective; });
      draw("plot-compare", ["a", "b"].map(function (side) {
        const values = rows.map(function (r) { return r[side] ? r[side].speedup : null; });
        return { type: "bar", name: data[side].label + ": " + data[side].machine.hostname + " #" + data[side].machine.id,
          x: labels, y: values,
          error_y: { type: "data", symmetric: false,
            array: rows.map(function (r) { const w = r[side]; return w && w.speedup_ci95 ? w.speedup_ci95[1] - w.speedup : 0; }),
            arrayminus: rows.map(function (r) { const w = r[side]; return w && w.speedup_ci95 ? w.speedup - w.speedup_ci95[0] : 0; }) } };
      }), { barmode: "group", yaxis: { title: { text: "speedup over the stock default (x)" } } });
    }).catch(function (error) { failed("plot-compare", error); });
  }

  if (page === "study") studyPage();
  else if (page === "trial") trialPage();
  else if (page === "compare") comparePage();
})();
