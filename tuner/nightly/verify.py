"""Does a stored winner's speedup still hold? Read from the last `tuner verify` stored,
or measured now.

``last_verify`` judges the newest verify session stored for a winner (the rounds of
the winner and of the stock default that `tuner verify` or `tuner nightly` replayed
after the winner was chosen) the way `tuner verify` does: today's speedup with its
95% interval, and whether the stored speedup lies inside it.

``verify_winner`` runs such a session through the replay routine the finalists and
`tuner verify` share (tuner.search's ``Replay``, judged by the study's own ``Judge``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tuner.vocabulary import config_key

if TYPE_CHECKING:
    from tuner.hardware import MachineInfo
    from tuner.model import ModelRef
    from tuner.store import ReplayRecord, Store, WinnerRecord

# Fewer measured processes per side than this states no speedup (as `tuner verify`).
MIN_RUNS = 2


@dataclass(frozen=True)
class VerifyResult:
    when: datetime
    holds: bool | None  # None: too few runs produced a result to state a speedup
    speedup: float | None  # today's, over the stock default
    low: float | None  # its 95% confidence interval
    high: float | None
    stored: float | None  # the speedup stored with the winner
    runs: int  # measured processes of the winner
    note: str = ""

    def describe(self) -> str:
        """ "1.21x (95% CI 1.10-1.32) against the stored 2.05x", or why there is no figure."""
        if self.speedup is None or self.low is None or self.high is None:
            return self.note or "too few runs produced a result"
        today = f"{self.speedup:.2f}x (95% CI {self.low:.2f}-{self.high:.2f})"
        return today if self.stored is None else f"{today} against the stored {self.stored:.2f}x"

    def to_dict(self) -> dict[str, Any]:
        return {
            "when": self.when.isoformat(),
            "holds": self.holds,
            "speedup": self.speedup,
            "low": self.low,
            "high": self.high,
            "stored": self.stored,
            "runs": self.runs,
            "note": self.note,
        }


def _sessions(replays: list["ReplayRecord"]) -> list[list["ReplayRecord"]]:
    """Verify replays split into the sessions that made them: a session begins with a
    round-0 run of a role the current session has already run."""
    sessions: list[list[ReplayRecord]] = []
    for replay in replays:
        if not sessions or (replay.round == 0 and any(r.round == 0 and r.role == replay.role for r in sessions[-1])):
            sessions.append([])
        sessions[-1].append(replay)
    return sessions


def last_verify(store: "Store", winner: "WinnerRecord") -> VerifyResult | None:
    """The newest verify session of this winner since it was chosen, judged; None when
    it was never verified."""
    best = winner.best
    key = config_key(best.config)
    replays = store.replays(winner.study_id, kind="verify")
    for session in reversed(_sessions(replays)):
        candidate = [r for r in session if r.role == "candidate"]
        default = [r for r in session if r.role == "default"]
        if not candidate or any(config_key(r.config) != key for r in candidate):
            continue  # a verify of an earlier winner of the same study
        if min(r.created for r in session) < best.updated:
            return None  # the newest session of this configuration predates the winner
        return _judge(best, candidate, default, max(r.created for r in session))
    return None


def _judge(best: Any, candidate: list["ReplayRecord"], default: list["ReplayRecord"], when: datetime) -> VerifyResult:
    from tuner.nightly._search import finalists as F
    from tuner.trial import spec as S
    from tuner.trial.measure import summarize

    def as_candidate(role: str, rows: list["ReplayRecord"]) -> Any:
        found = F.Candidate(role, rows[0].config if rows else {})
        for row in rows:
            stats = summarize(row.samples_ms) if row.samples_ms else {}
            if row.throughput is not None:
                stats["throughput"] = row.throughput
            found.runs.append(
                S.TrialResult(status=row.status, reason=row.reason, samples_ms=list(row.samples_ms), stats=stats)
            )
        return found

    winner, stock = as_candidate("candidate", candidate), as_candidate("default", default)
    if len(winner.measured) < MIN_RUNS or len(stock.measured) < MIN_RUNS:
        return VerifyResult(
            when,
            None,
            None,
            None,
            None,
            best.speedup,
            len(winner.measured),
            f"only {len(winner.measured)} winner and {len(stock.measured)} default runs measured",
        )
    today = F.compare(best.objective, stock, winner, best.batch)
    holds = None if best.speedup is None else today.contains(best.speedup)
    return VerifyResult(when, holds, today.point, today.low, today.high, best.speedup, len(winner.measured))


def verify_winner(
    store: "Store",
    winner: "WinnerRecord",
    model: "ModelRef",
    machine: "MachineInfo",
    *,
    rounds: int,
    min_time: float = 1.0,
    noise_retries: int = 1,
    noise_wait_s: float = 3.0,
) -> VerifyResult:
    """Replay the winner and the stock default ``rounds`` times each in fresh
    processes, interleaved, judged as the study judged its finalists and stored as
    ``verify`` replays (the routine `tuner verify` uses), then judged as a whole
    (``last_verify``). The caller holds the machine lock."""
    from datetime import UTC

    from tuner.model import DEFAULT_EVAL_TEXTS
    from tuner.nightly._search import Judge, Replay
    from tuner.nightly._search import finalists as F
    from tuner.search.quiet import QuietRunner
    from tuner.space import load_space
    from tuner.trial import spec as S
    from tuner.trial.runner import TrialRunner

    best = winner.best
    default_config = (
        winner.study_settings.get("default") or load_space(machine, objective=best.objective).default_config()
    )
    if config_key(best.config) == config_key(default_config):
        return VerifyResult(
            datetime.now(UTC),
            True,
            1.0,
            1.0,
            1.0,
            best.speedup,
            0,
            "the winner is the stock default: nothing to verify",
        )
    study = next(s for s in store.studies(fingerprint=winner.machine.fingerprint) if s.id == winner.study_id)
    workload = S.Workload(seq_len=best.seq_len, batch=best.batch)
    measure = S.MeasureSettings(min_seconds=min_time, warmup_seconds=min(0.3, min_time / 3))
    runner = TrialRunner(model, machine, list(DEFAULT_EVAL_TEXTS), measure)
    try:
        replay = Replay(
            QuietRunner(runner, retries=noise_retries, wait_s=noise_wait_s),
            store,
            winner.study_id,
            workload,
            runner.reference(workload),
            Judge.of_study(study, model.task),
            measure,
            "verify",
            label=lambda c, r: (
                f"nightly verify, seq {best.seq_len}, {'winner' if c.role == 'candidate' else 'default'} round {r + 1}"
            ),
        )
        replay.remeasure(
            [
                F.Candidate("candidate", best.config, store.trial_by_id(best.trial_id)),
                F.Candidate("default", default_config),
            ],
            rounds,
        )
    finally:
        runner.close()
    judged = last_verify(store, winner)
    assert judged is not None  # the session just stored
    return judged
