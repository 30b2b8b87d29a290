"""What `tuner nightly` will do, and why: one item per workload, decided from the
status table (tuner.nightly.status) and the optional config file.

| status | action |
|---|---|
| stale, drifted | ``retune``: a study warm-started from the previous winner and its finalists |
| missing, tuned under other libraries its backend does not use | ``confirm``: measure the default, the previous winner and its finalists here, re-measure the best |
| missing, tuned on a similar machine | ``retune`` from that machine's winner |
| listed in the config file, never tuned | ``tune`` |
| fresh, not confirmed for ``verify_after`` | ``verify`` (then ``retune`` if it drifted) |
| fresh, confirmed recently; unavailable | ``skip`` |
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tuner.nightly.config import NightlyConfig
from tuner.nightly.status import DRIFTED, FRESH, MISSING, STALE, UNAVAILABLE, WinnerStatus

if TYPE_CHECKING:
    from tuner.nightly.status import Assessor

RETUNE, CONFIRM, TUNE, VERIFY, SKIP = "retune", "confirm", "tune", "verify", "skip"
ACTIONS: tuple[str, ...] = (RETUNE, CONFIRM, TUNE, VERIFY, SKIP)
# Which actions measure: their order in a run (re-tunes first: they are what changed).
_ORDER = {RETUNE: 0, TUNE: 1, CONFIRM: 2, VERIFY: 3, SKIP: 4}


@dataclass
class PlanItem:
    model: str
    seq_len: int
    batch: int
    objective: str
    action: str  # ACTIONS
    state: str  # the status table's state, or "new" for a config entry never tuned
    reason: str
    status: WinnerStatus | None = None
    backends: list[str] | None = None  # what a study searches (None: every backend)
    trials: int | None = None  # measured trials per study, as --trials or the config file say (None: default)
    previous_trials: int | None = None  # what the previous winner's study was given
    # Only the software, the space, the tuner or the weights changed (not the hardware): a
    # short search from the previous winner's neighbourhood (tuner.nightly.run.SHORT_EXTRA).
    short: bool = False
    budget_s: float | None = None  # at most this per study
    finalists: int | None = None
    seeds: list[dict[str, Any]] = field(default_factory=list)  # configurations measured after the warm start

    @property
    def key(self) -> str:
        return f"{self.model}|seq{self.seq_len}|batch{self.batch}|{self.objective}"

    def label(self) -> str:
        return (
            f"{self.model} seq {self.seq_len}"
            + (f" batch {self.batch}" if self.batch != 1 else "")
            + (f" {self.objective}" if self.objective != "p50" else "")
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "model": self.model,
            "seq_len": self.seq_len,
            "batch": self.batch,
            "objective": self.objective,
            "action": self.action,
            "state": self.state,
            "reason": self.reason,
            "backends": self.backends,
            "trials": self.trials,
            "budget_s": self.budget_s,
            "finalists": self.finalists,
            "seeds": len(self.seeds),
            "search": "short" if self.short else "full",
        }


def _age(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def make_plan(
    statuses: list[WinnerStatus], config: NightlyConfig, assessor: "Assessor", now: datetime, trials: int | None = None
) -> list[PlanItem]:
    """The items in the order a run takes them (re-tunes first); ``trials`` is --trials."""
    items: list[PlanItem] = []
    seen: set[tuple[str, int, int, str]] = set()
    for status in statuses:
        seen.add(status.key)
        items.append(_item_for(status, config, assessor, now))
    for entry in config.models:
        for seq_len in entry.seq_lens:
            key = (entry.model, seq_len, entry.batch, entry.objective)
            if key in seen:
                continue
            seen.add(key)
            items.append(
                PlanItem(
                    entry.model,
                    seq_len,
                    entry.batch,
                    entry.objective,
                    TUNE,
                    "new",
                    f"listed in {config.path}; never tuned here or on a similar machine",
                    backends=list(entry.backends) if entry.backends else None,
                )
            )
    for item in items:
        listed = config.entry_for(item.model, item.seq_len, item.batch, item.objective)
        if listed is not None:
            item.backends = list(listed.backends) if listed.backends else item.backends
            item.budget_s = listed.budget_s
            item.finalists = listed.finalists if listed.finalists is not None else item.finalists
        item.trials = trials or (listed.trials if listed else None) or config.trials
    items.sort(key=lambda i: (_ORDER[i.action], i.model, i.objective, i.batch, i.seq_len))
    return items


def _item_for(status: WinnerStatus, config: NightlyConfig, assessor: "Assessor", now: datetime) -> PlanItem:
    item = PlanItem(status.model, status.seq_len, status.batch, status.objective, SKIP, status.state, "", status)
    winner = status.winner
    reasons = "; ".join(status.reasons)
    if status.state == UNAVAILABLE or winner is None:
        item.reason = f"skip: {reasons}"
        return item
    best = winner.best
    item.backends = assessor.study_backends(winner.optuna_study_name)
    item.finalists = len(best.finalists) if best.finalists else 0
    previous = winner.study_settings.get("trials")
    item.previous_trials = previous if isinstance(previous, int) and previous > 0 else None
    hardware_changed = winner.machine.hardware_fingerprint != assessor.machine.hardware_fingerprint
    item.short = status.state in (STALE, DRIFTED) and not hardware_changed
    if status.state == FRESH:
        confirmed = max([best.updated] + ([status.verify.when] if status.verify else []))
        age = (now - confirmed).total_seconds()
        what = "verified" if status.verify and status.verify.when >= best.updated else "chosen"
        if age < config.verify_after_s:
            item.reason = f"fresh, {what} {_age(age)} ago"
        else:
            item.action = VERIFY
            item.reason = f"fresh, {what} {_age(age)} ago (verified every {_age(config.verify_after_s)})"
        return item
    item.seeds = seed_configs(winner)
    if status.state in (STALE, DRIFTED):
        item.action, item.reason = RETUNE, f"{status.state}: {reasons}"
    elif status.state == MISSING and status.software_only:
        item.action, item.reason = CONFIRM, f"missing: {reasons}"
    elif status.state == MISSING:
        item.action, item.reason = RETUNE, f"missing: {reasons}"
    return item


def seed_configs(winner: Any) -> list[dict[str, Any]]:
    """The previous winner's configuration, then its finalists' (distinct, in order)."""
    from tuner.vocabulary import config_key

    configs = [winner.best.config] + [
        f["config"] for f in winner.best.finalists or [] if isinstance(f.get("config"), dict)
    ]
    unique: dict[str, dict[str, Any]] = {}
    for config in configs:
        unique.setdefault(config_key(config), dict(config))
    return list(unique.values())
