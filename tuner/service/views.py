"""From stored rows (tuner.store._queries) to what the API sends and the pages show.

Pure functions over plain dicts: no database, no web framework, so each is easy to
test and the API and the pages cannot disagree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tuner.search.pareto import throughput_of

# Config keys that say what runs, shown first and never as "settings".
_IDENTITY = ("backend", "precision")


def machine_view(row: Mapping[str, Any], stale: Mapping[int, str], detail: bool = False) -> dict[str, Any]:
    info = row.get("info") or {}
    cpu = info.get("cpu") or {}
    topology = info.get("topology") or {}
    isa = cpu.get("isa") or {}
    view = {
        "id": row["id"],
        "fingerprint": row["fingerprint"],
        "hardware_fingerprint": row["hardware_fingerprint"],
        "software_fingerprint": row["software_fingerprint"],
        "hostname": row["hostname"],
        "first_seen": row["first_seen"],
        "last_seen": row["last_seen"],
        "cpu_vendor": cpu.get("vendor"),
        "cpu_model": cpu.get("model_name"),
        "arch": cpu.get("arch"),
        "isa": sorted(name for name, present in isa.items() if present),
        "sockets": topology.get("sockets"),
        "cores": topology.get("cores"),
        "threads_per_core": topology.get("threads_per_core"),
        "numa_nodes": len(topology["numa_nodes"]) if isinstance(topology.get("numa_nodes"), dict) else None,
        "memory_bytes": info.get("memory_bytes"),
        "gpus": [g for g in info.get("gpus") or [] if isinstance(g, dict)],
        "gpu_note": info.get("gpu_note"),
        "libraries": {str(k): (None if v is None else str(v)) for k, v in (info.get("libraries") or {}).items()},
        "stale": row["id"] in stale,
        "stale_reason": stale.get(row["id"]),
    }
    if detail:
        view["info"] = info
    return view


def best_view(row: Mapping[str, Any], stale: Mapping[int, str]) -> dict[str, Any]:
    low, high = row.get("speedup_low"), row.get("speedup_high")
    finalists = [
        {k: f.get(k) for k in ("trial", "speedup", "low", "high", "significant", "runs", "config")}
        for f in row.get("finalists") or []
        if isinstance(f, dict)
    ]
    return {
        "machine_id": row["machine_id"],
        "fingerprint": row["fingerprint"],
        "hostname": row["hostname"],
        "model_pk": row["model_pk"],
        "model_id": row["model_id"],
        "content_hash": row["content_hash"],
        "seq_len": row["seq_len"],
        "batch": row["batch"],
        "objective": row["objective"],
        "study_id": row["study_id"],
        "trial_id": row["trial_id"],
        "trial_number": row["trial_number"],
        "config": row["config"] or {},
        "metrics": row["metrics"] or {},
        "default_median_ms": row["default_median_ms"],
        "speedup": row["speedup"],
        "speedup_ci95": [low, high] if low is not None and high is not None else None,
        "significant": row["significant"],
        "finalists": finalists,
        "updated": row["updated"],
        "stale": row["machine_id"] in stale,
        "stale_reason": stale.get(row["machine_id"]),
    }


def result_view(row: Mapping[str, Any], stale: Mapping[int, str]) -> dict[str, Any]:
    """A winner as the overview lists it (tuner.store._queries.best_summaries)."""
    low, high = row.get("speedup_low"), row.get("speedup_high")
    view = {
        k: row[k]
        for k in (
            "machine_id",
            "model_pk",
            "model_id",
            "seq_len",
            "batch",
            "objective",
            "study_id",
            "trial_id",
            "trial_number",
            "backend",
            "precision",
            "median_ms",
            "default_median_ms",
            "speedup",
            "significant",
            "updated",
        )
    }
    view.update(
        speedup_ci95=[low, high] if low is not None and high is not None else None,
        stale=row["machine_id"] in stale,
        stale_reason=stale.get(row["machine_id"]),
    )
    return view


def trial_summary(row: Mapping[str, Any]) -> dict[str, Any]:
    config = row.get("config") or {}
    view = {
        k: row[k]
        for k in (
            "id",
            "study_id",
            "number",
            "status",
            "reason",
            "value",
            "median_ms",
            "p90_ms",
            "p99_ms",
            "mean_ms",
            "cv",
            "n_samples",
            "accuracy",
            "accuracy_ok",
            "peak_rss_mb",
            "throughput",
            "started_at",
            "finished_at",
        )
    }
    view.update(
        config=config,
        backend=_text(config.get("backend")),
        precision=_text(config.get("precision")),
        flags=list(row.get("flags") or []),
    )
    return view


def trial_detail(row: Mapping[str, Any]) -> dict[str, Any]:
    view = trial_summary(row)
    view.update(
        {k: row[k] for k in ("stdev_ms", "samples_ms", "effective", "timings", "artifact", "stderr_tail", "noise")}
    )
    view["settings"] = settings_side_by_side(row.get("config") or {}, row.get("effective") or {})
    return view


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def settings_side_by_side(config: Mapping[str, Any], effective: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The runtime knobs a configuration asked for beside what the worker's probe found.

    ``match`` is None where the request does not name a checkable value (the plan,
    not the config, turns e.g. ``binding=taskset`` into CPUs); the tuner itself
    compares the plan with the probe and stores a trial whose settings did not take
    as ``invalid`` with each difference in its reason.
    """
    rows: list[dict[str, Any]] = []

    def add(setting: str, requested: Any, got: Any, match: bool | None = None) -> None:
        rows.append({"setting": setting, "requested": requested, "effective": got, "match": match})

    if not effective:
        return [
            {"setting": k, "requested": v, "effective": None, "match": None}
            for k, v in config.items()
            if k not in _IDENTITY
        ]
    threads = config.get("threads")
    got_threads = effective.get("threads")
    add(
        "threads",
        threads,
        got_threads,
        None if threads is None or got_threads is None else int(threads) == int(got_threads),
    )
    binding = config.get("binding")
    cpus = effective.get("cpus")
    add("binding / CPUs", binding, cpus)
    if "numa_memory" in config or effective.get("mempolicy") not in (None, "default"):
        add("memory policy", config.get("numa_memory"), effective.get("mempolicy"))
    malloc = effective.get("malloc") or {}
    allocator = config.get("allocator")
    got_malloc = malloc.get("kind")
    wanted_malloc = "system" if allocator in (None, "system") else allocator
    add(
        "allocator",
        allocator,
        f"{got_malloc} ({malloc.get('library')})" if got_malloc else None,
        None if got_malloc is None else wanted_malloc == got_malloc,
    )
    if "malloc_conf" in config or effective.get("jemalloc"):
        add("malloc_conf", config.get("malloc_conf"), effective.get("jemalloc"))
    openmp = effective.get("openmp") or {}
    if "openmp" in config or openmp.get("runtime"):
        wanted = config.get("openmp")
        runtime = openmp.get("runtime")
        add("OpenMP runtime", wanted, runtime, None if wanted is None else str(wanted) == runtime)
    for knob, label in (("omp_proc_bind", "proc_bind"), ("omp_places", "num_places"), ("kmp_blocktime", "blocktime")):
        if knob in config:
            add(knob, config.get(knob), openmp.get(label))
    for name, value in sorted((effective.get("env") or {}).items()):
        add(f"${name}", None, value)
    shown = {
        "threads",
        "binding",
        "numa_memory",
        "allocator",
        "malloc_conf",
        "openmp",
        "omp_proc_bind",
        "omp_places",
        "kmp_blocktime",
        *_IDENTITY,
    }
    for key, value in config.items():
        if key not in shown:
            add(key, value, None)
    return rows


# -- plots -----------------------------------------------------------------------------------


def direction(objective: str) -> str:
    return "maximize" if objective == "throughput" else "minimize"


def accuracy_measure(task: str | None, series: Sequence[Mapping[str, Any]]) -> str:
    if task == "classification":
        return "label_agreement"
    for row in series:
        accuracy = row.get("accuracy") or {}
        if "label_agreement" in accuracy and "cosine_mean" not in accuracy:
            return "label_agreement"
        if "cosine_mean" in accuracy:
            return "cosine_mean"
    return "cosine_mean"


def guard_of(settings: Mapping[str, Any], measure: str) -> float | None:
    guard = settings.get("guard") or {}
    value = guard.get("min_label_agreement" if measure == "label_agreement" else "min_cosine_mean")
    return float(value) if isinstance(value, (int, float)) else None


def series_view(
    study: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    task: str | None,
    max_points: int,
) -> dict[str, Any]:
    """The study's trials as plot columns, thinned to ``max_points`` (see SeriesOut)."""
    objective = study["objective"]
    maximize = direction(objective) == "maximize"
    best: float | None = None
    best_so_far: list[float | None] = []
    improved: set[int] = set()
    for i, row in enumerate(rows):
        value = row.get("value")
        if (
            row.get("status") == "ok"
            and value is not None
            and (best is None or (value > best if maximize else value < best))
        ):
            best = value
            improved.add(i)
        best_so_far.append(best)
    keep = list(range(len(rows)))
    sampled = len(rows) > max_points
    if sampled:
        stride = max(1, -(-len(rows) // max(1, max_points - len(improved))))
        keep = sorted(set(range(0, len(rows), stride)) | improved | {len(rows) - 1})
    measure = accuracy_measure(task, rows)
    picked = [rows[i] for i in keep]
    return {
        "total": len(rows),
        "sampled": sampled,
        "objective": objective,
        "unit": "inf/s" if objective == "throughput" else "ms",
        "direction": direction(objective),
        "number": [r["number"] for r in picked],
        "status": [r["status"] for r in picked],
        "value": [r.get("value") for r in picked],
        "median_ms": [r.get("median_ms") for r in picked],
        "throughput": [throughput_of(r.get("median_ms"), r.get("throughput"), study["batch"]) for r in picked],
        "accuracy": [_accuracy(r.get("accuracy"), measure) for r in picked],
        "accuracy_ok": [r.get("accuracy_ok") for r in picked],
        "backend": [_text(r.get("backend")) for r in picked],
        "precision": [_text(r.get("precision")) for r in picked],
        "best_so_far": [best_so_far[i] for i in keep],
        "guard": guard_of(study.get("settings") or {}, measure),
        "accuracy_measure": measure,
    }


def _accuracy(accuracy: Mapping[str, Any] | None, measure: str) -> float | None:
    value = (accuracy or {}).get(measure)
    return float(value) if isinstance(value, (int, float)) else None


def backend_bests(objective: str, batch: int, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The best ok trial per (backend, precision), best first."""
    maximize = direction(objective) == "maximize"
    groups: dict[tuple[str | None, str | None], list[Mapping[str, Any]]] = {}
    for row in rows:
        config = row.get("config") or {}
        if row.get("value") is None:
            continue
        groups.setdefault((_text(config.get("backend")), _text(config.get("precision"))), []).append(row)
    found = []
    for (backend, precision), members in groups.items():
        top = (max if maximize else min)(members, key=lambda r: r["value"])
        found.append(
            {
                "backend": backend,
                "precision": precision,
                "trial_number": top["number"],
                "value": top["value"],
                "median_ms": top.get("median_ms"),
                "throughput": throughput_of(top.get("median_ms"), top.get("throughput"), batch),
                "trials": len(members),
            }
        )
    return sorted(found, key=lambda b: -b["value"] if maximize else b["value"])


# -- comparisons -------------------------------------------------------------------------------


def differences(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Every key of two flat dicts, the differing ones first (then in a's order)."""
    a, b = a or {}, b or {}
    keys = list(a) + [k for k in b if k not in a]
    rows = [{"key": str(k), "a": a.get(k), "b": b.get(k), "same": a.get(k) == b.get(k)} for k in keys]
    return sorted(rows, key=lambda r: r["same"])


def machine_facts(view: Mapping[str, Any]) -> dict[str, Any]:
    """What decides speed on a machine, flat, for a side-by-side comparison."""
    facts: dict[str, Any] = {
        "hostname": view["hostname"],
        "cpu": view["cpu_model"],
        "vendor": view["cpu_vendor"],
        "arch": view["arch"],
        "isa": " ".join(view["isa"]) or None,
        "sockets": view["sockets"],
        "cores": view["cores"],
        "threads_per_core": view["threads_per_core"],
        "numa_nodes": view["numa_nodes"],
        "memory_gib": round(view["memory_bytes"] / 2**30, 1) if view["memory_bytes"] else None,
        "gpus": ", ".join(str(g.get("name")) for g in view["gpus"]) or None,
    }
    facts.update({f"lib:{name}": version for name, version in sorted(view["libraries"].items())})
    return facts


def workload_key(best: Mapping[str, Any]) -> tuple[str, int, int, str]:
    return (best["content_hash"], best["seq_len"], best["batch"], best["objective"])


def compare_rows(
    a: Sequence[Mapping[str, Any]], b: Sequence[Mapping[str, Any]], pair_all: bool = False
) -> list[dict[str, Any]]:
    """Winners of the two sides paired by workload (model, length, batch, objective);
    with ``pair_all`` (two studies) the first winner of each side are paired whatever
    their workload."""
    if pair_all:
        first_a, first_b = (a[0] if a else None), (b[0] if b else None)
        if first_a is None and first_b is None:
            return []
        pairs: list[tuple[Mapping[str, Any] | None, Mapping[str, Any] | None]] = [(first_a, first_b)]
    else:
        by_a = {workload_key(w): w for w in a}
        by_b = {workload_key(w): w for w in b}
        keys = sorted(set(by_a) | set(by_b), key=lambda k: (k[0], k[1], k[2], k[3]))
        pairs = [(by_a.get(k), by_b.get(k)) for k in keys]
    rows = []
    for left, right in pairs:
        either = left if left is not None else right
        assert either is not None
        rows.append(
            {
                "model_id": either["model_id"],
                "seq_len": either["seq_len"],
                "batch": either["batch"],
                "objective": either["objective"],
                "a": left,
                "b": right,
                "config": differences(left["config"] if left else None, right["config"] if right else None),
            }
        )
    return sorted(rows, key=lambda r: (r["model_id"], r["seq_len"], r["batch"], r["objective"]))
