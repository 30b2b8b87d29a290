"""``tuner.load_best``: the stored winner as a ready predictor inside a Python server.

The backend, precision, conversion recipe and thread count are applied here; the
process-level knobs (binding, allocator, OpenMP runtime) can only be set when a
process starts, so the server is started with ``tuner launch``. The predictor checks
that it was (the same probe and comparison as a trial) and warns, naming each
difference, when it was not.

Under ``tuner launch`` the configuration comes from TUNER_CONFIG (no database read),
so the server runs exactly what the launcher applied.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from tuner.errors import UserError

if TYPE_CHECKING:
    from tuner.backends.base import Predictor
    from tuner.model import ModelRef


class RuntimeSettingsWarning(RuntimeWarning):
    """The process runs without some of the winner's process-level settings."""


@dataclass
class TunedPredictor:
    """Call it with a text or a list of texts: mean-pooled embeddings (encoders) or
    logits (classifiers) as float32 numpy, one row per text.

    ``config`` is the winning configuration, ``seq_len`` and ``batch`` the tuned
    workload (texts are padded to ``seq_len`` and run ``batch`` at a time), and
    ``runtime_differences`` what this process lacks of the winner's process-level
    settings (empty under ``tuner launch``).
    """

    model: "ModelRef" = field(repr=False)
    config: dict[str, Any]
    seq_len: int
    batch: int
    _backend: "Predictor" = field(repr=False)
    runtime_differences: list[str] = field(default_factory=list)

    @property
    def task(self) -> str:
        """``embedding`` or ``classification``: what a call returns."""
        return self.model.task

    @property
    def model_path(self) -> str:
        """The local folder the model was loaded from."""
        return self.model.path

    def _inputs(self, texts: list[str]) -> dict[str, np.ndarray]:
        from tuner.model import load_tokenizer

        tokenizer = load_tokenizer(self.model)
        # Padded to the tuned length: the shape that was measured (and the one a
        # fixed-shape artifact accepts).
        encoded = tokenizer(texts, padding="max_length", truncation=True, max_length=self.seq_len, return_tensors="np")
        names = [n for n in tokenizer.model_input_names if n in ("input_ids", "attention_mask", "token_type_ids")]
        return {n: np.ascontiguousarray(encoded[n], dtype=np.int64) for n in names}

    def __call__(self, texts: str | Sequence[str]) -> np.ndarray:
        from tuner.trial.accuracy import summarize_output

        single = isinstance(texts, str)
        items: list[str] = [texts] if isinstance(texts, str) else [str(t) for t in texts]
        if not items:
            raise ValueError("no texts to run")
        rows = []
        for start in range(0, len(items), self.batch):
            chunk = items[start : start + self.batch]
            padded = chunk + [chunk[-1]] * (self.batch - len(chunk))  # the tuned batch size, always
            inputs = self._inputs(padded)
            p = self._backend
            output = p.to_numpy(p.run(p.bind(inputs)))
            rows.append(summarize_output(self.task, output, inputs["attention_mask"])[: len(chunk)])
        result = np.concatenate(rows, axis=0)
        return result[0] if single else result


def _config_from_launch(model_hash: str, seq_len: int | None) -> tuple[dict[str, Any], int] | None:
    """The configuration ``tuner launch`` put in the environment, if it is this model's."""
    text = os.environ.get("TUNER_CONFIG")
    if not text or os.environ.get("TUNER_MODEL_HASH") != model_hash:
        return None
    launched_len = int(os.environ.get("TUNER_SEQ_LEN", "0") or 0)
    if seq_len is not None and launched_len != seq_len:
        return None
    try:
        return json.loads(text), launched_len
    except ValueError:
        return None


def _launched_model(model: str) -> "ModelRef":
    """``model`` resolved here; in a process `tuner launch` started, the folder it names
    when the name does not resolve (a backend's own environment lacks the model's
    package), checked against the launched model's hash."""
    from tuner.errors import ModelNotFoundError
    from tuner.model import resolve_model

    try:
        return resolve_model(model)
    except ModelNotFoundError:
        path, expected = os.environ.get("TUNER_MODEL_PATH"), os.environ.get("TUNER_MODEL_HASH")
        if not path or not expected:
            raise
        ref = resolve_model(path)
        if ref.content_hash != expected:
            raise
        return ref


def _check_interpreter(model: str, config: dict[str, Any], seq_len: int) -> None:
    """A winner whose backend lives in its own environment loads only in that
    environment's interpreter: say which, and how to start in it."""
    from tuner.envs import worker_python

    python = worker_python(config)  # UserError when the environment is not ready
    if python is None or os.path.realpath(python) == os.path.realpath(sys.executable):
        return
    raise UserError(
        f"the winner for {model} at seq {seq_len} runs on {config['backend']}, which lives in its own environment: "
        f"load it in {python}, not {sys.executable} (`tuner launch --model {model} --seq-len {seq_len} -- python "
        "your_program.py` starts your program there)"
    )


def load_best(
    model: str,
    seq_len: int | None = None,
    batch: int = 1,
    objective: str = "p50",
    db_url: str | None = None,
    check_runtime: bool = True,
) -> TunedPredictor:
    """A predictor running the stored winner for ``model`` on this machine.

    ``seq_len`` picks the tuned length when several were tuned. With
    ``check_runtime`` the process's binding, allocator, OpenMP runtime and variables
    are compared with the winner's; differences are in ``runtime_differences`` and
    reported with a RuntimeSettingsWarning.
    """
    from tuner import paths
    from tuner.artifacts.cache import ArtifactCache
    from tuner.backends import get_backend
    from tuner.deploy.lookup import best_config
    from tuner.hardware import detect
    from tuner.trial import probe
    from tuner.trial.plan import plan_runtime, threads_per_instance

    if check_runtime:
        probe.remember_start(keep_first=True)  # before a runtime can pin this thread
    ref = _launched_model(model)
    launched = _config_from_launch(ref.content_hash, seq_len)
    if launched is not None:
        config, tuned_len = launched
    else:
        best = best_config(model, seq_len, batch, objective, db_url)
        config, tuned_len = best.config, best.seq_len
    machine = detect()
    try:
        threads = threads_per_instance(config, machine)
    except ValueError as exc:
        raise UserError(f"the tuned configuration of {model} cannot run here: {exc}") from None
    _check_interpreter(model, config, tuned_len)
    backend = get_backend(config["backend"])
    run_config = {**config, "threads": threads}
    cache = ArtifactCache(paths.cache_dir() / "artifacts")
    backend.prepare(ref, run_config, cache)
    loaded = backend.load(ref, run_config, cache)
    predictor = TunedPredictor(ref, config, tuned_len, batch, loaded)
    if check_runtime:
        instance = int(os.environ.get("TUNER_INSTANCE", "0") or 0)
        try:
            plan = plan_runtime(config, machine, instance)
        except ValueError as exc:  # MissingLibraryError among them
            predictor.runtime_differences = [str(exc)]
        else:
            expect = dict(plan.expect)
            expect.pop("pinned_threads", None)  # no OpenMP thread exists before the first call
            effective = probe.probe()
            effective["threads"] = backend.threads_in_use(loaded)
            predictor.runtime_differences = probe.differences(expect, effective)
        if predictor.runtime_differences:
            warnings.warn(
                f"{model} runs without the tuned runtime settings: {'; '.join(predictor.runtime_differences)}. "
                f"Start this process with `tuner launch --model {model} --seq-len {tuned_len} -- CMD`.",
                RuntimeSettingsWarning,
                stacklevel=2,
            )
    return predictor
