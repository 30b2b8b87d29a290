"""Which stored study a tuning run continues: a workload's study is found by its name,
so the name holds everything that makes stored trials comparable (machine, model,
workload, objective, space, reference texts, and what judges a trial); the settings
stored beside it are what a later reader needs to read its trials; and the run says
whether it resumes a study or starts one beside others of the same workload (and
why, so that a changed option does not look like lost trials).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from tuner.search._options import TuneOptions
from tuner.store import Store, StudyRecord
from tuner.trial import spec as S
from tuner.trial.accuracy import Guard

if TYPE_CHECKING:
    from tuner.hardware import MachineInfo
    from tuner.model import ModelRef
    from tuner.space import Space


def study_name(
    options: TuneOptions,
    workload: S.Workload,
    machine: MachineInfo,
    model: ModelRef,
    space: Space,
    eval_texts: Sequence[str],
) -> str:
    """The Optuna study (and store study) name of ``workload`` in a tuning run."""
    return ":".join(
        [
            "tuner",
            machine.fingerprint,
            model.content_hash[:16],
            f"seq{workload.seq_len}",
            f"batch{workload.batch}",
            options.objective,
            space.content_hash()[:12],
            hashlib.sha256("\n".join(eval_texts).encode()).hexdigest()[:8],
            *_verdict_key(options.guard, options.max_memory_mb),
        ]
    )


def _verdict_key(guard: Guard, limit: float | None) -> list[str]:
    """What else decides a trial's verdict, in the study's name: the accuracy guard
    and the memory limit (nothing when they are the defaults, so a study's name is
    what it was before they were part of it)."""
    if guard == Guard() and limit is None:
        return []
    judged = json.dumps({"guard": vars(guard), "max_memory_mb": limit}, sort_keys=True)
    return ["judged-" + hashlib.sha256(judged.encode()).hexdigest()[:8]]


def study_settings(options: TuneOptions, default: dict[str, Any], model_revision: str | None) -> dict[str, Any]:
    """What is stored with a new study: `tuner verify` judges with its guard and memory
    limit, and every speedup is over its stock ``default``."""
    return {
        "trials": options.trials,
        "budget_s": options.budget_s,
        "guard": vars(options.guard),
        "strategy": options.strategy,
        "default": default,
        "max_memory_mb": options.max_memory_mb,
        "model_revision": model_revision,  # the commit of a hub model (None otherwise)
    }


def announce(store: Store, record: StudyRecord, fingerprint: str, model_hash: str, note: Callable[[str], None]) -> None:
    """Say whether the study resumes a stored one, or starts anew beside others of the
    same workload (and what differs from the latest of them)."""
    seq = f"seq {record.seq_len}"
    if record.created != record.updated:  # get_or_create_study found it: this run resumes it
        note(
            f"{seq}: resuming study {record.id} ({record.n_trials} trial{'s' if record.n_trials != 1 else ''} "
            "stored; --trials and "
            "--budget count them; `tuner auto --help` says which options start a new study)"
        )
        return
    others = [
        s
        for s in store.studies(fingerprint=fingerprint, model=model_hash)
        if s.id != record.id and s.seq_len == record.seq_len and s.batch == record.batch
    ]
    if not others:
        return
    latest = others[-1]
    differs = []
    if latest.objective != record.objective:
        differs.append(f"objective {record.objective} (was {latest.objective})")
    if latest.space_hash != record.space_hash:
        differs.append("the search space (--backends, --space or the space files)")
    for key, label in (("guard", "the accuracy guard"), ("max_memory_mb", "--max-memory")):
        if (latest.settings or {}).get(key) != (record.settings or {}).get(key):
            differs.append(
                f"{label} {_setting(record.settings.get(key))} (was {_setting((latest.settings or {}).get(key))})"
            )
    why = "; ".join(differs) or "the guard sentences or the model's files"
    note(f"{seq}: a new study {record.id}, as {why} differ from study {latest.id}, which stays in `tuner history`")


def _setting(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in value.items())
    return "none" if value is None else str(value)
