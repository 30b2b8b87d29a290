"""The one small interface every backend implements, and what the worker relies on.

A backend turns (model, config) into a ``Predictor`` inside a trial worker
(``tuner.trial.worker``, which reads nothing of a backend but what is declared here).
The expensive part, conversion (ONNX export, graph optimization, quantization),
happens in ``prepare`` and is cached on disk by ``tuner.artifacts``, keyed by the
model's content hash + the recipe + the versions of the libraries its search-space
file declares, so trials that differ only in runtime knobs (threads, binding) reuse it.

Errors, for every method below:

- ``tuner.errors.UnsupportedConfigError``: this backend cannot run this config here
  (a value it does not support, a provider the installed build lacks, a fusion that
  matched nothing). The trial is recorded ``unsupported`` with the message, and the
  study goes on. Raise it as early as the problem is known, before any conversion.
- Any other exception is a bug or a broken install: the trial is recorded ``error``
  with the exception's first line, its traceback in the trial's output.
- Never ``sys.exit``, never print the result: the worker owns stdout's protocol.

The config is the flat dict of the space (``backend``, ``precision``, ``threads``,
...): a backend reads its own keys and ignores the others (the allocator, the
binding and the OpenMP runtime were applied when the process started).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from tuner.artifacts.cache import ArtifactCache
    from tuner.model import ModelRef


@runtime_checkable
class Predictor(Protocol):
    """A loaded model ready to time.

    ``bind`` converts numpy inputs to the backend's native form once, outside the
    timed loop; ``run`` is exactly what is timed; ``to_numpy`` turns its output into
    float32 numpy: the last hidden state (batch, seq, hidden) for an encoder, the
    logits (batch, labels) for a classifier.
    """

    # One-off costs paid during the calls, in seconds by name, that the worker adds to
    # the trial's timings (torch.compile's first call per shape: "compile_s"). Empty
    # for most; read after the timed calls.
    timings: dict[str, float]

    def bind(self, inputs: dict[str, np.ndarray]) -> Any: ...

    def run(self, bound: Any) -> Any: ...

    def to_numpy(self, output: Any) -> np.ndarray: ...


@runtime_checkable
class Backend(Protocol):
    """A backend: its module and ``search_spaces/<name>.toml`` (docs/backends/README.md).

    The registry (``tuner.backends.get_backend``) makes one instance per use with no
    arguments; an instance holds no state between calls.
    """

    name: str  # the config's "backend" value: the stem of its search-space file

    def recipe(self, config: dict[str, Any]) -> dict[str, Any] | None:
        """The part of ``config`` that decides the converted artifact (None: no
        conversion). Pure: the same config gives an equal recipe, ``config`` is not
        changed, nothing is built or loaded, so the parent may call it (``tuner
        export`` records it). Runtime knobs (threads, session options) stay out, so
        that trials differing only in them share the artifact."""

    def prepare(self, model: "ModelRef", config: dict[str, Any], cache: "ArtifactCache") -> str | None:
        """Check ``config``, then build (or find in ``cache``) the artifact; returns its
        cache key, or None when there is none.

        Idempotent: a second call with equal arguments, in this process or another,
        builds nothing and returns the same key (two processes asking at once build it
        once: the cache's lock). Raises UnsupportedConfigError for a config it cannot
        run before it converts anything. Timed apart from ``load`` (``prepare_s``).
        """

    def load(self, model: "ModelRef", config: dict[str, Any], cache: "ArtifactCache") -> Predictor:
        """The predictor with ``config``'s precision and thread count applied.

        May assume ``prepare`` returned for the same arguments, in this process or an
        earlier one (the artifact is in the cache), but not that it ran in this
        process: keep nothing in memory between the two. Raises UnsupportedConfigError
        when the framework does not take ``config`` as asked (a provider that did not
        load, a property it changed).
        """

    def threads_in_use(self, predictor: Any) -> int | None:
        """The intra-op thread count the framework really uses, read from it (the probe
        compares it with the config's ``threads``); None: it cannot be read."""
