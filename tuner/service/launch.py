"""The ``launch`` block of a winner, as `tuner best --format json` prints it.

How to run a configuration (binding, LD_PRELOAD, variables) is planned on the
machine that will run it, by the same code trials use, so only the winners of the
machine serving the dashboard get one; another machine's winner says why not.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from tuner.errors import UserError

_lock = threading.Lock()
_this: list[Any] = []  # the detected MachineInfo, once


def this_machine() -> Any:
    """This machine's MachineInfo (detected once per process)."""
    with _lock:
        if not _this:
            from tuner.hardware import detect

            _this.append(detect())
        return _this[0]


def this_fingerprint() -> str | None:
    return this_machine().fingerprint if _this else None


def launch_block(best: dict[str, Any], model_path: str | None) -> tuple[dict[str, Any] | None, str | None]:
    """(launch, None) for a winner of this machine, else (None, why there is none)."""
    from tuner.deploy.lookup import BestConfig, deploy_env
    from tuner.trial.plan import plan_instances

    machine = this_machine()
    if best["fingerprint"] != machine.fingerprint:
        return None, (f"planned only on the machine that runs it: run `tuner best --format json` on {best['hostname']}")
    config = best["config"]
    try:
        plans = plan_instances(config, machine)
    except ValueError as exc:  # includes a preload library this machine lacks
        return None, f"this winner cannot run here: {exc}"
    notes = [n for p in plans for n in p.notes]
    try:
        from tuner.envs import worker_python

        python = worker_python(config)
    except UserError as exc:  # its backend's environment is gone
        python, notes = None, notes + [str(exc)]
    path = model_path if model_path and Path(model_path).is_dir() else None
    per_instance = [
        (p.prefix, deploy_env(config, p.env, best["content_hash"], best["seq_len"], p.instance, p.instances, path))
        for p in plans
    ]
    # BestConfig.to_dict() is where the block's shape is written: build one to use it.
    shaped = BestConfig(
        model=best["model_id"],
        seq_len=best["seq_len"],
        batch=best["batch"],
        objective=best["objective"],
        config=config,
        metrics=best["metrics"],
        speedup=best["speedup"],
        default_median_ms=best["default_median_ms"],
        prefix=per_instance[0][0],
        env=per_instance[0][1],
        unset=plans[0].unset,
        notes=notes,
        model_hash=best["content_hash"],
        instances=per_instance if len(plans) > 1 else [],
        python=python,
    )
    launch: dict[str, Any] = shaped.to_dict()["launch"]
    return launch, None
