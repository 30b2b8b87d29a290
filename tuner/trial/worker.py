"""The trial worker: one fresh process per trial.

    python -m tuner.trial.worker --result-fd N  < spec.json

It reads a TrialSpec on stdin, prepares (or finds in the cache) the artifact, loads
the backend, checks accuracy against the fp32 reference, times the model, probes
what it really got, and writes one TrialResult as JSON to fd N. stdout and stderr are
left to the libraries; the parent keeps the tail of both.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from pathlib import Path

import numpy as np

from tuner.errors import UnsupportedConfigError
from tuner.trial import accuracy
from tuner.trial.measure import summarize, time_calls
from tuner.trial.probe import probe
from tuner.trial.spec import ERROR, OK, UNSUPPORTED, TrialResult, TrialSpec


def _eval_outputs(spec: TrialSpec, predictor) -> np.ndarray:
    """The summarized outputs of every eval text, stacked in order."""
    from tuner.model import eval_inputs

    rows = []
    for inputs in eval_inputs(spec.model, spec.eval_texts, spec.workload.seq_len):
        output = predictor.to_numpy(predictor.run(predictor.bind(inputs)))
        rows.append(accuracy.summarize_output(spec.model.task, output, inputs["attention_mask"]))
    return np.concatenate(rows, axis=0)


def run_spec(spec: TrialSpec) -> TrialResult:
    from tuner.artifacts.cache import ArtifactCache
    from tuner.backends import get_backend
    from tuner.model import make_inputs

    timings: dict[str, float] = {}
    t = time.perf_counter()
    backend = get_backend(spec.config["backend"])
    cache = ArtifactCache(Path(spec.cache_dir) / "artifacts")
    artifact = backend.prepare(spec.model, spec.config, cache)
    timings["prepare_s"] = time.perf_counter() - t

    t = time.perf_counter()
    predictor = backend.load(spec.model, spec.config, cache)
    timings["load_s"] = time.perf_counter() - t

    if spec.mode == "reference":
        outputs = _eval_outputs(spec, predictor)
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
        figures = accuracy.compare(spec.model.task, reference, _eval_outputs(spec, predictor))
    timings["accuracy_s"] = time.perf_counter() - t

    t = time.perf_counter()
    bound = predictor.bind(make_inputs(spec.model, spec.workload.seq_len, spec.workload.batch))
    samples = time_calls(lambda: predictor.run(bound), spec.measure)
    timings["measure_s"] = time.perf_counter() - t

    effective = probe()
    effective["threads"] = backend.threads_in_use(predictor)
    return TrialResult(
        status=OK,
        samples_ms=samples,
        stats=summarize(samples),
        accuracy=figures,
        effective=effective,
        timings=timings,
        artifact=artifact,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tuner.trial.worker")
    parser.add_argument("--result-fd", type=int, required=True)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        spec = TrialSpec.from_json(sys.stdin.read())
        result = run_spec(spec)
    except UnsupportedConfigError as exc:
        result = TrialResult(status=UNSUPPORTED, reason=str(exc))
    except Exception as exc:  # a failed trial is data: report it, the study goes on
        traceback.print_exc()
        result = TrialResult(status=ERROR, reason=f"{type(exc).__name__}: {exc}".splitlines()[0][:500])
    result.timings["worker_s"] = time.perf_counter() - started
    with os.fdopen(args.result_fd, "w") as channel:
        channel.write(result.to_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())
