"""``tuner measure``: run one configuration as one trial and print its result and the
settings the process really got.

    tuner measure --model M --seq-len 16 --set backend=onnxruntime --set precision=int8 \\
        --set allocator=jemalloc --set binding=taskset

Keys not given take the space's defaults for the chosen backend; ``tuner space
--model M`` lists them. A value the space pruned on this machine (a library that is
not installed, say) still runs, so the trial shows why it cannot: it is reported
``invalid`` with the reason, never as a result. Nothing is stored.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from tuner.cli.common import format_accuracy, format_ms, int_between, positive_float, positive_int
from tuner.errors import UserError
from tuner.vocabulary import DEFAULT_OBJECTIVE, SINGLE_OBJECTIVES, Objective

if TYPE_CHECKING:
    from tuner.space import Space
    from tuner.trial.launch import RuntimePlan
    from tuner.trial.spec import TrialResult, Workload


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "measure",
        help="run one configuration as one trial and show what it got",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, help="local folder, installed model package, or cached Hugging Face id")
    p.add_argument(
        "--seq-len", type=int_between(1, 8192), default=128, metavar="S", help="sequence length, 1-8192 (default 128)"
    )
    p.add_argument("--batch", type=positive_int, default=1, help="sentences per call, 1 or more (default 1)")
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a configuration key (repeat); e.g. backend=torch, threads=1, allocator=jemalloc",
    )
    p.add_argument(
        "--objective",
        default=None,
        choices=SINGLE_OBJECTIVES,
        help="which space the keys come from (default: throughput when instances is set, else p50)",
    )
    p.add_argument(
        "--min-time",
        type=positive_float,
        default=1.0,
        metavar="SECONDS",
        help="time for at least this long after warm-up, above 0 (default 1.0)",
    )
    p.add_argument(
        "--timeout",
        type=positive_float,
        default=600.0,
        metavar="SECONDS",
        help="seconds before the trial is killed, above 0 (default 600)",
    )
    p.add_argument("--wait", action="store_true", help="wait for a tuning run on this machine instead of refusing")
    p.add_argument("--json", action="store_true", help="the whole result as JSON")
    p.set_defaults(func=run)


def parse_sets(items: list[str]) -> dict[str, str]:
    sets: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"--set {item!r}: write KEY=VALUE, e.g. --set allocator=jemalloc")
        if key in sets:
            raise UserError(f"--set {key} is given twice")
        sets[key] = value.strip()
    return sets


def _scalar(text: str) -> Any:
    """A --set value as the space file would spell it: true/false, numbers, else text."""
    if text in ("true", "false"):
        return text == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def build_config(space: Space, sets: dict[str, str]) -> tuple[dict[str, Any], list[str]]:
    """The full configuration for ``sets`` (defaults for the rest) and a warning per
    value the space pruned here. Raises UserError for unknown keys and values."""
    from tuner.space.schema import _same_kind

    backend = sets.get("backend", space.default_backend)
    if backend not in space.backends:
        space.validate({"backend": backend})  # raises with the reason it is not here
    dims = space.dimensions(backend)
    known = {d.name for d in dims}
    unknown = [k for k in sets if k != "backend" and k not in known]
    if unknown:
        raise UserError(f"{space.unknown_key_reason(unknown[0], backend)}; see `tuner space`")
    config: dict[str, Any] = {"backend": backend}
    warnings: list[str] = []
    for dim in dims:
        if not dim.active(config):
            if dim.name in sets:
                raise UserError(f"{dim.name} does not apply to backend {backend} unless {dim.describe_when()}")
            continue
        if dim.name not in sets:
            config[dim.name] = dim.default if dim.allows(dim.default) else dim.values()[0]
            continue
        value = _scalar(sets[dim.name])
        if not dim.allows(value):
            pruned = next(
                (
                    p
                    for p in space.pruned
                    if p.dimension == dim.name
                    and p.backend == dim.owner
                    and _same_kind(p.choice, value)
                    and p.choice == value
                ),
                None,
            )
            if pruned is None:
                raise UserError(
                    f"{dim.name}={sets[dim.name]} is not allowed for backend {backend} "
                    f"(allowed: {dim.describe_values()})"
                )
            warnings.append(f"{dim.name}={sets[dim.name]} is pruned from the space here: {pruned.reason}")
        config[dim.name] = value
    return config, warnings


def run(args: argparse.Namespace) -> int:
    from tuner.hardware import detect
    from tuner.model import DEFAULT_EVAL_TEXTS, resolve_model
    from tuner.search.lock import MachineLock
    from tuner.space import load_space
    from tuner.trial import spec as S
    from tuner.trial.measure import stability_warnings
    from tuner.trial.runner import TrialRunner

    if args.min_time <= 0:
        raise UserError("--min-time must be positive, e.g. 1.0")
    if args.batch < 1:
        raise UserError("--batch must be at least 1")
    sets = parse_sets(args.sets)
    objective = args.objective or (Objective.THROUGHPUT.value if "instances" in sets else DEFAULT_OBJECTIVE.value)
    model = resolve_model(args.model)
    machine = detect()
    space = load_space(machine, objective=objective)
    config, warnings = build_config(space, sets)
    workload = S.Workload(seq_len=args.seq_len, batch=args.batch)
    measure = S.MeasureSettings(min_seconds=args.min_time, warmup_seconds=min(0.3, args.min_time / 3))
    runner = TrialRunner(model, machine, list(DEFAULT_EVAL_TEXTS), measure, args.timeout)
    for warning in warnings:
        print(f"tuner measure: {warning}; running it anyway", file=sys.stderr)
    with MachineLock(wait=args.wait, what=f"tuner measure --model {args.model}"):
        reference = runner.reference(workload)
        result, plan = runner.run(workload, config, reference)
    if args.json:
        print(
            json.dumps(
                {
                    "model": model.model_id,
                    "seq_len": args.seq_len,
                    "batch": args.batch,
                    "config": config,
                    "status": result.status,
                    "reason": result.reason,
                    "stats": result.stats,
                    "accuracy": result.accuracy,
                    "plan": {"prefix": plan.prefix, "env": plan.env, "unset": plan.unset, "notes": plan.notes},
                    "effective": result.effective,
                    "timings": result.timings,
                    "flags": result.flags,
                    "warnings": stability_warnings(result.stats, flags=result.flags),
                },
                indent=2,
                sort_keys=True,
                default=str,
            )
        )
    else:
        print_result(config, workload, result, plan)
    return 0 if result.status == S.OK else 1


def print_result(config: dict[str, Any], workload: Workload, result: TrialResult, plan: RuntimePlan) -> None:
    from tuner.trial.measure import stability_warnings
    from tuner.trial.probe import summary
    from tuner.vocabulary import describe_config

    print(f"{describe_config(config)}, seq {workload.seq_len}, batch {workload.batch}")
    print(f"  status     {result.status}" + (f": {result.reason}" if result.reason else ""))
    stats = result.stats
    if stats.get("n"):
        print(
            f"  latency    median {format_ms(stats.get('median'))} ms  p90 {format_ms(stats.get('p90'))} ms  "
            f"p99 {format_ms(stats.get('p99'))} ms  ({int(stats['n'])} calls, cv {stats.get('cv', 0):.1%})"
        )
    for warning in stability_warnings(stats, flags=result.flags):
        print(f"  warning    {warning}")
    if "throughput" in stats:
        print(f"  throughput {stats['throughput']:.1f} inferences/s over {int(stats.get('instances', 1))} instance(s)")
    if result.accuracy:
        print(f"  accuracy   {format_accuracy(result.accuracy)}")
    if plan.env or plan.prefix:
        print("  applied    " + "\n             ".join(plan.describe()))
    else:
        print("  applied    nothing: no process was started")
    lines = summary(result.effective)
    if lines:
        print("  effective  " + "\n             ".join(lines))
    if result.status not in ("ok", "invalid") and result.stderr_tail.strip():
        print("  output tail:\n    " + "\n    ".join(result.stderr_tail.strip().splitlines()[-15:]))
