"""A synthetic fleet database, for the dashboard's scale benchmark and tests
(benchmarks/serve_scale.py, tests/service): machines x models x trials written
straight into the ``tuner_*`` tables with ``executemany`` in large transactions.

The rows look like real ones (configs of several backends and precisions, samples,
accuracy, flags, winners with intervals, finalist replays), but nothing was measured:
a fixed seed makes every build identical. SQLite only. Like ``optuna.testing``, this
ships in the package but no command uses it.
"""

from __future__ import annotations

import json
import random
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

_BACKENDS = (
    ("onnxruntime", ("fp32", "int8")),
    ("openvino", ("fp32", "bf16", "int8")),
    ("torch", ("fp32", "bf16")),
    ("torchscript", ("fp32",)),
)
_ISA_SETS = (
    ("AMD EPYC 9R45", ["avx2", "avx512f", "avx512_vnni", "avx512_bf16"]),
    (
        "Intel Xeon Platinum 8480+",
        ["avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8"],
    ),
    ("Intel Xeon Gold 6148", ["avx2", "avx512f"]),
    ("AMD EPYC 7B13", ["avx2"]),
)
_STATUSES = ("ok",) * 16 + ("rejected", "pruned", "invalid", "error")
_FLAGS = (None, None, None, None, ["unstable"], ["outliers"], ["noisy"], ["unstable", "outliers"])
_T0 = datetime(2026, 1, 1)
CHUNK = 50_000


@dataclass(frozen=True)
class Shape:
    machines: int = 100
    models: int = 10
    trials: int = 2_000  # per study
    seq_lens: tuple[int, ...] = (128,)
    samples: int = 20  # samples kept per trial
    stale_every: int = 10  # every Nth machine is an older software version of the next one's host


def _when(seconds: float) -> str:
    return (_T0 + timedelta(seconds=seconds)).isoformat(sep=" ")


def _machine_info(i: int, hostname: str, hw: str, sw: str, fp: str, onnxruntime: str) -> str:
    cpu, isa = _ISA_SETS[i % len(_ISA_SETS)]
    cores = (2, 8, 32, 64)[i % 4]
    flags = sorted(set(isa) | {"sse4_2", "fma", "avx", "bmi2"})
    return json.dumps(
        {
            "hostname": hostname,
            "cpu": {
                "vendor": "GenuineIntel" if "Intel" in cpu else "AuthenticAMD",
                "model_name": cpu,
                "family": 6,
                "model": 143,
                "stepping": 8,
                "arch": "x86_64",
                "flags": flags,
                "isa": {
                    name: name in isa
                    for name in (
                        "avx2",
                        "avx512f",
                        "avx512_vnni",
                        "avx_vnni",
                        "avx512_bf16",
                        "avx512_fp16",
                        "amx_tile",
                        "amx_bf16",
                        "amx_int8",
                    )
                },
            },
            "topology": {
                "sockets": 1,
                "cores": cores,
                "threads_per_core": 2,
                "logical_cpus": list(range(2 * cores)),
                "numa_nodes": {"0": list(range(2 * cores))},
                "core_of": {},
            },
            "memory_bytes": cores * 4 * 2**30,
            "available_cpus": list(range(2 * cores)),
            "physical_cores_available": cores,
            "gpus": [],
            "gpu_note": "no NVIDIA GPU (synthetic)",
            "libraries": {"python": "3.11", "torch": "2.13.0+cpu", "onnxruntime": onnxruntime, "openvino": "2026.4.1"},
            "hardware_fingerprint": hw,
            "software_fingerprint": sw,
            "fingerprint": fp,
        }
    )


def _configs(rng: random.Random, n: int) -> list[tuple[str, str, str]]:
    """(config JSON, backend, precision) variants to draw trials from."""
    found = []
    for _ in range(n):
        backend, precisions = rng.choice(_BACKENDS)
        precision = rng.choice(precisions)
        config = {
            "backend": backend,
            "precision": precision,
            "threads": rng.choice([1, 2, 4, 8]),
            "binding": rng.choice(["none", "taskset", "numactl"]),
            "allocator": rng.choice(["system", "jemalloc", "tcmalloc"]),
        }
        if backend == "onnxruntime":
            config.update(
                graph=rng.choice(["fused", "unfused"]),
                graph_opt_level=rng.choice(["basic", "all"]),
                inter_op_threads=1,
                intra_op_spinning=rng.choice([True, False]),
            )
        elif backend == "openvino":
            config.update(
                performance_hint=rng.choice(["latency", "throughput"]), streams=1, cpu_pinning=rng.choice([True, False])
            )
        else:
            config.update(openmp=rng.choice(["gnu", "intel"]), omp_proc_bind=rng.choice(["unset", "close"]))
        found.append((json.dumps(config), backend, precision))
    return found


def build(path: Path, shape: Shape = Shape(), seed: int = 0) -> dict[str, int]:
    """Create the database at ``path`` (which must not exist); returns row counts."""
    from tuner.store import Store

    path = Path(path)
    if path.exists():
        raise FileExistsError(path)
    Store.open(f"sqlite:///{path}").close()  # the schema, by the tuner's own migrations
    rng = random.Random(seed)
    connection = sqlite3.connect(path)
    # A bulk load into a fresh file: no journal while filling, then WAL as the tuner keeps it.
    connection.execute("PRAGMA journal_mode=OFF")
    connection.execute("PRAGMA synchronous=OFF")
    try:
        counts = _fill(connection, shape, rng)
        connection.commit()
        connection.execute("PRAGMA journal_mode=WAL")
    finally:
        connection.close()
    return counts


def _fill(db: sqlite3.Connection, shape: Shape, rng: random.Random) -> dict[str, int]:
    machines = []
    for i in range(shape.machines):
        older = shape.stale_every and i % shape.stale_every == 0 and i + 1 < shape.machines
        host = f"host-{(i + 1 if older else i):03d}"
        hw = f"hw{(i + 1 if older else i) % 37:04d}"
        sw = f"sw{i:04d}"
        fp = f"fp{i:05d}"
        seen = _when(i * 60 + (0 if older else 86_400))
        machines.append(
            (i + 1, fp, hw, sw, host, _machine_info(i, host, hw, sw, fp, "1.31.0" if older else "1.32.0"), seen, seen)
        )
    db.executemany(
        "INSERT INTO tuner_machines (id, fingerprint, hardware_fingerprint, software_fingerprint, "
        "hostname, info, first_seen, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        machines,
    )
    models = [
        (j + 1, f"org/encoder-{j}", f"{j:064x}", f"/models/encoder-{j}", "embedding", _when(j))
        for j in range(shape.models)
    ]
    db.executemany(
        "INSERT INTO tuner_models (id, model_id, content_hash, path, task, created) VALUES (?, ?, ?, ?, ?, ?)", models
    )
    configs = _configs(rng, 400)
    samples_pool = [json.dumps([round(rng.uniform(1.0, 3.0), 4) for _ in range(shape.samples)]) for _ in range(64)]
    effective = json.dumps(
        {
            "cpus": [0, 1],
            "mempolicy": "default",
            "malloc": {"kind": "system"},
            "openmp": {"runtime": None},
            "threads": 2,
            "env": {"OMP_NUM_THREADS": "2"},
        }
    )
    timings = json.dumps({"prepare_s": 0.4, "load_s": 0.1, "warmup_s": 0.2, "measure_s": 1.0, "worker_s": 1.9})
    guard = {"min_cosine_mean": 0.99, "min_cosine_min": 0.98, "min_label_agreement": 0.99}
    studies: list[tuple[object, ...]] = []
    best: list[tuple[object, ...]] = []
    replays: list[tuple[object, ...]] = []
    trial_id = 0
    study_id = 0
    pending: list[tuple[object, ...]] = []
    for machine in machines:
        for model in models:
            for seq_len in shape.seq_lens:
                study_id += 1
                t0 = machine[0] * 1e4 + model[0] * 1e3
                settings = json.dumps(
                    {
                        "trials": shape.trials,
                        "guard": guard,
                        "strategy": "structured",
                        "default": {"backend": "torch", "precision": "fp32"},
                    }
                )
                studies.append(
                    (
                        study_id,
                        machine[0],
                        model[0],
                        seq_len,
                        1,
                        "p50",
                        "space",
                        f"synthetic:{machine[1]}:{model[0]}:seq{seq_len}",
                        settings,
                        "running" if study_id == 1 else "done",
                        _when(t0),
                        _when(t0 + shape.trials * 5),
                    )
                )
                scale = seq_len / 16
                best_trial: tuple[float, int, int, str] | None = None
                first_id = trial_id + 1
                for number in range(shape.trials):
                    trial_id += 1
                    config, backend, precision = configs[rng.randrange(len(configs))]
                    status = _STATUSES[rng.randrange(len(_STATUSES))]
                    base = {"onnxruntime": 1.0, "openvino": 1.1, "torch": 2.5, "torchscript": 2.2}[backend]
                    base *= {"fp32": 1.0, "bf16": 0.7, "int8": 0.55}[precision]
                    median = round(base * scale * rng.uniform(0.8, 1.6), 4)
                    cosine = 1.0 if precision == "fp32" else round(rng.uniform(0.975, 0.9995), 5)
                    accuracy_ok = cosine >= 0.99
                    if status == "ok" and not accuracy_ok:
                        status = "rejected"
                    measured = status in ("ok", "rejected", "invalid")
                    value = median if status in ("ok", "rejected") else None
                    flags = _FLAGS[rng.randrange(len(_FLAGS))] if measured else None
                    pending.append(
                        (
                            trial_id,
                            study_id,
                            number,
                            config,
                            status,
                            None if status == "ok" else f"synthetic {status}",
                            value,
                            median if measured else None,
                            median * 1.1 if measured else None,
                            median * 1.3 if measured else None,
                            median * 1.02 if measured else None,
                            median * 0.05 if measured else None,
                            0.05 if measured else None,
                            shape.samples if measured else None,
                            samples_pool[trial_id % 64] if measured else "[]",
                            json.dumps({"cosine_mean": cosine, "cosine_min": cosine - 0.005}) if measured else None,
                            accuracy_ok if measured else None,
                            effective if measured else None,
                            timings,
                            None,
                            "" if status != "error" else "Traceback ...\nRuntimeError: synthetic",
                            _when(t0 + number * 5),
                            _when(t0 + number * 5 + 4),
                            json.dumps(flags) if flags else None,
                            None,
                            250.0,
                            1000.0 / median if measured else None,
                        )
                    )
                    if status == "ok" and (best_trial is None or median < best_trial[0]):
                        best_trial = (median, trial_id, number, config)
                    if len(pending) >= CHUNK:
                        _insert_trials(db, pending)
                        pending = []
                if best_trial is not None:
                    median, winner, number, config = best_trial
                    default_ms = 2.5 * scale * 1.2
                    speedup = default_ms / median
                    finalists = [
                        {
                            "trial": number,
                            "config": json.loads(config),
                            "runs": 5,
                            "speedup": speedup,
                            "low": speedup * 0.92,
                            "high": speedup * 1.08,
                            "significant": True,
                        }
                    ]
                    best.append(
                        (
                            machine[0],
                            model[0],
                            seq_len,
                            1,
                            "p50",
                            winner,
                            config,
                            json.dumps(
                                {
                                    "median_ms": median,
                                    "p90_ms": median * 1.1,
                                    "p99_ms": median * 1.3,
                                    "value": median,
                                    "trial_number": number,
                                    "accuracy": {"cosine_mean": 0.995, "cosine_min": 0.99},
                                }
                            ),
                            default_ms,
                            speedup,
                            _when(t0 + shape.trials * 5),
                            speedup * 0.92,
                            speedup * 1.08,
                            True,
                            json.dumps(finalists),
                        )
                    )
                    for round_ in range(3):
                        for role, tid, cfg in (
                            ("default", first_id, json.dumps({"backend": "torch", "precision": "fp32"})),
                            ("candidate", winner, config),
                        ):
                            replays.append(
                                (
                                    study_id,
                                    tid,
                                    "finalist",
                                    role,
                                    round_,
                                    cfg,
                                    "ok",
                                    default_ms if role == "default" else median,
                                    samples_pool[round_],
                                    _when(t0 + shape.trials * 5 + round_),
                                )
                            )
                # Pareto front: the winner alone (one instance per trial: throughput is 1/latency).
                studies[-1] = studies[-1] + (json.dumps([best_trial[2]] if best_trial else []),)
    if pending:
        _insert_trials(db, pending)
    db.executemany(
        "INSERT INTO tuner_studies (id, machine_id, model_pk, seq_len, batch, objective, space_hash, "
        "optuna_study_name, settings, status, created, updated, pareto) VALUES "
        "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        studies,
    )
    db.executemany(
        "INSERT INTO tuner_best (machine_id, model_pk, seq_len, batch, objective, trial_id, config, "
        "metrics, default_median_ms, speedup, updated, speedup_low, speedup_high, significant, finalists) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        best,
    )
    db.executemany(
        "INSERT INTO tuner_replays (study_id, trial_id, kind, role, round, config, status, median_ms, "
        "samples_ms, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        replays,
    )
    return {
        "machines": len(machines),
        "models": len(models),
        "studies": len(studies),
        "trials": trial_id,
        "best": len(best),
        "replays": len(replays),
    }


def _insert_trials(db: sqlite3.Connection, rows: list[tuple[object, ...]]) -> None:
    db.executemany(
        "INSERT INTO tuner_trials (id, study_id, number, config, status, reason, value, median_ms, p90_ms, p99_ms, "
        "mean_ms, stdev_ms, cv, n_samples, samples_ms, accuracy, accuracy_ok, effective, timings, artifact, "
        "stderr_tail, started_at, finished_at, flags, noise, peak_rss_mb, throughput) VALUES "
        "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
