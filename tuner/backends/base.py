"""The one small interface every backend implements.

A backend turns (model, config) into a ``Predictor`` inside a trial worker. The
expensive part, conversion (ONNX export, graph optimization, quantization), happens in
``prepare`` and is cached on disk by ``tuner.artifacts``, keyed by the model's content
hash + the recipe + library versions, so trials that differ only in runtime knobs
(threads, binding) reuse it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from tuner.artifacts.cache import ArtifactCache
    from tuner.model import ModelRef


class Predictor(Protocol):
    """A loaded model ready to time.

    ``bind`` converts numpy inputs to the backend's native form once, outside the
    timed loop; ``run`` is exactly what is timed; ``to_numpy`` turns its output into
    float32 numpy: the last hidden state (batch, seq, hidden) for an encoder, the
    logits (batch, labels) for a classifier.
    """

    def bind(self, inputs: dict[str, np.ndarray]) -> Any: ...

    def run(self, bound: Any) -> Any: ...

    def to_numpy(self, output: Any) -> np.ndarray: ...


class Backend(Protocol):
    name: str

    def recipe(self, config: dict[str, Any]) -> dict[str, Any] | None:
        """The part of ``config`` that decides the converted artifact (None: no conversion)."""

    def prepare(self, model: "ModelRef", config: dict[str, Any], cache: "ArtifactCache") -> str | None:
        """Build (or find in the cache) the artifact; returns its cache key or None."""

    def load(self, model: "ModelRef", config: dict[str, Any], cache: "ArtifactCache") -> Predictor:
        """Load the predictor with the config's precision and thread count applied.

        Raises ``UnsupportedConfigError`` when this backend cannot run ``config``.
        """

    def threads_in_use(self, predictor: Predictor) -> int | None:
        """The intra-op thread count the framework really uses (for the probe)."""

