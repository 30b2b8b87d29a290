"""Reading the stored winner for this machine: shared by the CLI and the Python API."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass

from tuner.errors import ModelNotFoundError, UserError


@dataclass(frozen=True)
class BestConfig:
    model: str
    seq_len: int
    batch: int
    objective: str
    config: dict
    metrics: dict
    speedup: float | None
    default_median_ms: float | None
    prefix: list[str]  # binding command, e.g. ["taskset", "-c", "0"]
    env: dict[str, str]  # variables the winner runs with

    def to_dict(self) -> dict:
        return {
            "model": self.model, "seq_len": self.seq_len, "batch": self.batch, "objective": self.objective,
            "config": self.config, "metrics": self.metrics, "speedup": self.speedup,
            "default_median_ms": self.default_median_ms,
            "launch": {"prefix": self.prefix, "env": self.env},
        }

    def env_lines(self) -> list[str]:
        """``export`` lines a shell can eval."""
        return [f"export {k}={shlex.quote(v)}" for k, v in self.env.items()]

    def shell_prefix(self) -> str:
        """One line to put before a command: binding, then ``env`` with the variables."""
        parts = [*self.prefix, "env", *(f"{k}={v}" for k, v in self.env.items())]
        return " ".join(shlex.quote(p) for p in parts)


def model_key(model: str) -> str:
    """The content hash when the model resolves here, else the name as typed."""
    from tuner.model import resolve_model

    try:
        return resolve_model(model).content_hash
    except ModelNotFoundError:
        return model


def best_configs(
    model: str, seq_len: int | None = None, batch: int = 1, objective: str = "p50", db_url: str | None = None,
) -> list[BestConfig]:
    """Every stored winner for ``model`` on this machine (one per workload)."""
    from tuner.hardware import detect
    from tuner.store import Store
    from tuner.trial.launch import plan_runtime

    machine = detect()
    store = Store.open(db_url)
    try:
        rows = store.best(machine.fingerprint, model_key(model), seq_len=seq_len, batch=batch, objective=objective)
    finally:
        store.close()
    found = []
    for row in rows:
        plan = plan_runtime(row.config, machine)
        env = {**plan.env, "TUNER_CONFIG": json.dumps(row.config, sort_keys=True)}
        found.append(BestConfig(
            model=model, seq_len=row.seq_len, batch=row.batch, objective=row.objective, config=row.config,
            metrics=row.metrics, speedup=row.speedup, default_median_ms=row.default_median_ms,
            prefix=plan.prefix, env=env,
        ))
    return sorted(found, key=lambda b: b.seq_len)


def best_config(
    model: str, seq_len: int | None = None, batch: int = 1, objective: str = "p50", db_url: str | None = None,
) -> BestConfig:
    """The one stored winner; raises UserError when there is none or the choice is ambiguous."""
    found = best_configs(model, seq_len, batch, objective, db_url)
    if not found:
        where = f" at seq {seq_len}" if seq_len else ""
        raise UserError(
            f"no tuned configuration for {model}{where} (batch {batch}, {objective}) on this machine; "
            f"run `tuner auto --model {model}` first"
        )
    if len(found) > 1:
        lengths = ", ".join(str(b.seq_len) for b in found)
        raise UserError(f"{model} was tuned at several sequence lengths ({lengths}); pass --seq-len")
    return found[0]
