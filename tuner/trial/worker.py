"""The trial worker: one fresh process per trial.

    python -m tuner.trial.worker --result-fd N  < spec.json

It reads a TrialSpec on stdin, prepares (or finds in the cache) the artifact, loads
the backend, checks accuracy against the fp32 reference, times the model, probes
what it really got, and writes one TrialResult as JSON to fd N. stdout and stderr are
left to the libraries; the parent keeps the tail of both.

A trial's fixed cost is paid in every trial, so the worker imports only what its
backend needs: tokenized inputs come from a cache (tokenizing needs transformers,
which takes seconds to import), and an ONNX Runtime trial whose artifact is cached
never imports torch or transformers (benchmarks/trial_overhead.py measures it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tuner._metadata import distribution_version
from tuner.errors import UnsupportedConfigError
from tuner.trial import accuracy
from tuner.trial.measure import measure, stability_flags, summarize
from tuner.trial.noise import InterferenceMeter
from tuner.trial.probe import probe, remember_start, start_cpus
from tuner.trial.spec import ERROR, OK, PRUNED, UNSUPPORTED, TrialResult, TrialSpec
from tuner.vocabulary import version_or_absent

if TYPE_CHECKING:
    from tuner.backends.base import Predictor
    from tuner.trial.throughput import Barrier


def _inputs(spec: TrialSpec) -> tuple[dict[str, np.ndarray], list[dict[str, np.ndarray]]]:
    """The timed input and one input per eval text, tokenized once per (model, length,
    batch, texts, transformers version) and cached as .npz."""
    from tuner.model import BENCH_TEXT

    transformers_version = version_or_absent(distribution_version("transformers"))
    key = json.dumps(
        [
            spec.model.content_hash,
            spec.workload.seq_len,
            spec.workload.batch,
            spec.eval_texts,
            BENCH_TEXT,
            transformers_version,
        ]
    )
    path = Path(spec.cache_dir) / "inputs" / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.npz"
    if path.exists():
        with np.load(path) as stored:
            bench = {k.split("/", 1)[1]: stored[k] for k in stored.files if k.startswith("bench/")}
            evals: list[dict[str, np.ndarray]] = [{} for _ in spec.eval_texts]
            for k in stored.files:
                if k.startswith("eval"):
                    index, name = k[4:].split("/", 1)
                    evals[int(index)][name] = stored[k]
        return bench, evals
    from tuner.model import eval_inputs, make_inputs

    bench = make_inputs(spec.model, spec.workload.seq_len, spec.workload.batch)
    evals = eval_inputs(spec.model, spec.eval_texts, spec.workload.seq_len)
    arrays = {f"bench/{k}": v for k, v in bench.items()}
    arrays.update({f"eval{i}/{k}": v for i, inputs in enumerate(evals) for k, v in inputs.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **arrays)  # type: ignore[arg-type]  # numpy's stub takes **arrays for allow_pickle
    os.replace(tmp, path)  # another worker reads the whole file or none
    return bench, evals


def _eval_outputs(spec: TrialSpec, predictor: "Predictor", evals: list[dict[str, np.ndarray]]) -> np.ndarray:
    """The summarized outputs of every eval text, stacked in order."""
    rows = []
    for inputs in evals:
        output = predictor.to_numpy(predictor.run(predictor.bind(inputs)))
        rows.append(accuracy.summarize_output(spec.model.task, output, inputs["attention_mask"], spec.model.pooling))
    return np.concatenate(rows, axis=0)


def _reset_peak_rss() -> bool:
    """Start the peak-memory count now (Linux: clear_refs 5 resets VmHWM), so a trial
    that converted the model is not charged for the conversion."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float | None:
    """The peak resident memory (VmHWM) of this process, in MB."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError):
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_spec(spec: TrialSpec, barrier: "Barrier | None" = None) -> TrialResult:
    """One trial, reading of its backend only what ``tuner.backends.base`` declares:
    prepare, load, threads_in_use, and the predictor's bind, run, to_numpy, timings.
    An UnsupportedConfigError or any other exception propagates to ``main``."""
    from tuner.artifacts.cache import ArtifactCache
    from tuner.backends import get_backend

    timings: dict[str, float] = {}
    t = time.perf_counter()
    backend = get_backend(spec.config["backend"])
    cache = ArtifactCache(Path(spec.cache_dir) / "artifacts")
    artifact = backend.prepare(spec.model, spec.config, cache)
    timings["prepare_s"] = time.perf_counter() - t
    _reset_peak_rss()

    t = time.perf_counter()
    predictor = backend.load(spec.model, spec.config, cache)
    timings["load_s"] = time.perf_counter() - t

    t = time.perf_counter()
    bench_inputs, evals = _inputs(spec)
    timings["inputs_s"] = time.perf_counter() - t

    if spec.mode == "reference":
        outputs = _eval_outputs(spec, predictor, evals)
        assert spec.reference_path, "a reference run needs reference_path"
        tmp = spec.reference_path + ".tmp.npz"
        np.savez(tmp, outputs=outputs)
        os.replace(tmp, spec.reference_path)  # readers never see a partial file
        return TrialResult(status=OK, timings=timings, artifact=artifact)

    # Accuracy first: it also warms the caches the timed loop will use.
    t = time.perf_counter()
    figures: dict[str, float] = {}
    if spec.reference_path:
        reference = np.load(spec.reference_path)["outputs"]
        figures = accuracy.compare(spec.model.task, reference, _eval_outputs(spec, predictor, evals))
    timings["accuracy_s"] = time.perf_counter() - t

    t = time.perf_counter()
    bound = predictor.bind(bench_inputs)
    # The CPUs the binding gave this process, read at start (an OpenMP runtime may narrow
    # the main thread's mask later; the meter must watch every CPU the trial may use).
    meter = InterferenceMeter(start_cpus())
    settled = True
    short_ms: list[float] = []
    stopped_early = False
    if barrier is not None:  # one instance of a throughput trial: a window shared with the others
        from tuner.trial.throughput import time_window

        meter.start()
        samples = time_window(lambda: predictor.run(bound), spec.measure, barrier)
    else:
        # The meter spans warm-up and timing: what disturbs the warm-up disturbs its settling too.
        meter.start()
        measured = measure(lambda: predictor.run(bound), spec.measure)
        samples, short_ms, stopped_early = measured.samples_ms, measured.short_ms, measured.stopped_early
        settled = measured.warmup.settled
        timings.update(
            warmup_s=measured.warmup.seconds,
            warmup_calls=float(measured.warmup.calls),
            planned_calls=float(measured.planned_calls),
        )
    noise = {"during": meter.stop()}
    timings["measure_s"] = time.perf_counter() - t
    # One-off costs a predictor paid on its first calls (torch.compile's compile_s).
    timings.update(predictor.timings)

    effective = probe()
    effective["threads"] = backend.threads_in_use(predictor)
    stats = summarize(samples)
    return TrialResult(
        status=PRUNED if stopped_early else OK,
        reason=(
            f"short first measurement: median {stats['median']:.3f} ms > {spec.measure.prune_above_ms:.3f} ms"
            if stopped_early
            else None
        ),
        samples_ms=samples,
        stats=stats,
        accuracy=figures,
        effective=effective,
        timings=timings,
        artifact=artifact,
        flags=[] if stopped_early else stability_flags(stats, settled),
        noise=noise,
        peak_rss_mb=_peak_rss_mb(),
        short_stats=summarize(short_ms) if short_ms else {},
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tuner.trial.worker")
    parser.add_argument("--result-fd", type=int, required=True)
    parser.add_argument("--ready-fd", type=int, default=None, help="throughput instances: the start barrier")
    parser.add_argument("--go-fd", type=int, default=None)
    parser.add_argument("--forked", action="store_true", help="forked by a fork server (tuner.trial.forkserver)")
    args = parser.parse_args(argv)
    # The CPU mask the binding gave, before any OpenMP runtime pins this thread (a
    # worker forked by a fork server inherits the mask its server read at start).
    remember_start(keep_first=True)
    started = time.perf_counter()
    try:
        spec = TrialSpec.from_json(sys.stdin.read())
        barrier = None
        if args.ready_fd is not None and args.go_fd is not None:
            from tuner.trial.throughput import Barrier

            barrier = Barrier(args.ready_fd, args.go_fd)
        result = run_spec(spec, barrier)
    except UnsupportedConfigError as exc:
        result = TrialResult(status=UNSUPPORTED, reason=str(exc))
    except Exception as exc:  # a failed trial is data: report it, the study goes on
        traceback.print_exc()
        result = TrialResult(status=ERROR, reason=f"{type(exc).__name__}: {exc}".splitlines()[0][:500])
    result.timings["worker_s"] = time.perf_counter() - started
    if result.effective:
        result.effective["start"] = "forked" if args.forked else "cold"
        result.effective["pid"] = os.getpid()
    with os.fdopen(args.result_fd, "w") as channel:
        channel.write(result.to_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())
