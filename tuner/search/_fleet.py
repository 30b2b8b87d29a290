"""Who else runs a study: nobody (``Alone``), or several machines with the same
fingerprint sharing one Optuna study (``Joined``: `tuner auto --join`, docs/fleet.md).
The study (tuner.search.study) calls the same hooks either way; alone, each does what
a single worker does.

Optuna's RDB storage is the engine of a shared study, nothing home-made: ``ask``
hands each trial to exactly one worker (a queued trial is taken with ``SELECT ... FOR
UPDATE``), each worker beats the heartbeat of the trial it runs
(``RDBStorage.record_heartbeat``: ``Study.optimize`` would start that thread, a study
driven by ask and tell starts its own: tuner.search._heartbeat), and ``optuna.storages.fail_stale_trials`` fails
a trial whose worker stopped beating for ``grace_s``, calling back here: the trial is
recorded ``interrupted`` and its configuration queued again, so a live worker runs it.
A worker settles only what Optuna has failed; a trial another live worker runs is
never touched.

The trial budget (``--trials``) is the study's, not each worker's: a worker asks for a
trial only while the trials stored plus those running elsewhere are under it, and
waits while the rest is running, so a dead worker's trial is run again by another.
What only one worker should do is claimed in the store (tuner.store's claims): the
study's first configurations are queued by one worker, and its finalists are
re-measured by one while the others wait, then read the stored re-measurements.
"""

from __future__ import annotations

import os
import socket
import time
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from tuner.search._heartbeat import Heartbeat, heartbeat_storage
from tuner.search._judge import NOT_COUNTED
from tuner.search._reconcile import Recorder, now
from tuner.store import ClaimRecord, DuplicateTrialError, NewTrial, Store, TrialRecord
from tuner.trial import spec as S
from tuner.vocabulary import config_key

if TYPE_CHECKING:
    import optuna

# A trial whose worker has not beaten its heartbeat for this long is failed and run
# again elsewhere. Longer than a database restart (tuner.search._journal.DB_RETRY_S):
# a worker waiting for the server cannot beat.
DEFAULT_GRACE_S = 180
# How often a waiting worker looks again.
POLL_S = 2.0

T = TypeVar("T")


class Alone:
    """A study this machine runs by itself: the hooks ``Joined`` fills for a shared one."""

    def __init__(self, store: Store, recorder: Recorder) -> None:
        self.store = store
        self.recorder = recorder
        self._tables: Any = None  # Optuna's storage on the store's database, once its schema is checked

    def storage(self) -> Any:
        """Optuna's tables in the store's database (StoreError, one line, for a schema
        it cannot use), checked once before anything is written."""
        if self._tables is None:
            self._tables = self.store.optuna_storage()
        return self._tables

    def reconcile(self, study: optuna.Study, study_id: int, space: Any = None) -> None:
        """Settle what a run of this study that died left (tuner.search._reconcile)."""
        self.recorder.reconcile(study, study_id, space)

    def queue_first(self, study_id: int, queue: Callable[[], None]) -> None:
        """Queue the study's first configurations (``queue``)."""
        queue()

    def sync(
        self, study: optuna.Study, study_id: int, trials: int | None, mine: tuple[dict[str, TrialRecord], int]
    ) -> tuple[dict[str, TrialRecord], int]:
        """What the study has measured (config key -> its first trial) and how many
        trials count: alone, ``mine``, what this worker counted."""
        return mine

    def running(self, trial: optuna.Trial) -> None:
        """``trial`` is this worker's now (nobody else needs to know)."""

    def finish(self, study: optuna.Study, study_id: int, decide: Callable[[], T]) -> T:
        """The study's answer: ``decide`` re-measures the finalists."""
        return decide()


class Joined(Alone):
    """One of several workers sharing the study (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        recorder: Recorder,
        grace_s: int = DEFAULT_GRACE_S,
        say: Callable[[str], None] | None = None,
        owner: str | None = None,
    ) -> None:
        super().__init__(store, recorder)
        self.grace_s = int(grace_s)
        self.say = say
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}"
        self.study_id: int | None = None
        # A few beats within the grace period, so one slow beat does not fail a live trial.
        self.beats = Heartbeat(store, self.owner, max(1, min(10, self.grace_s // 4)))

    def storage(self) -> Any:
        """The same tables (their schema checked first), with heartbeats."""
        super().storage()
        self.beats.storage = heartbeat_storage(self.store.url, self.beats.interval_s, self.grace_s, self._on_stale)
        return self.beats.storage

    def running(self, trial: optuna.Trial) -> None:
        """``trial`` is this worker's now: beat its heartbeat (once at once, then every
        few seconds) until the next one."""
        self.beats.trial_id = trial._trial_id
        self.beats.beat()
        self.beats.start()

    # -- trials of dead workers -------------------------------------------------------------

    def reconcile(self, study: optuna.Study, study_id: int, space: Any = None) -> None:
        """Settle only what Optuna has failed: stale trials (whose worker stopped
        beating), and failed trials without a row (a worker died while it settled them)."""
        self.study_id = study_id
        self._fail_stale(study)
        from optuna.trial import TrialState

        recorded = {t.number for t in self.store.trials(study_id)}
        for frozen in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
            if frozen.number not in recorded:
                self._on_stale(study, frozen)

    def _fail_stale(self, study: optuna.Study) -> None:
        import optuna

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)

    def _on_stale(self, study: optuna.Study, frozen: optuna.trial.FrozenTrial) -> None:
        """Optuna failed ``frozen`` (its worker stopped beating): record it interrupted
        and queue its configuration again, unless its worker recorded it after all."""
        assert self.study_id is not None
        if self.store.trial(self.study_id, frozen.number) is not None:
            return
        try:
            self.store.record_trial(
                NewTrial(
                    self.study_id,
                    frozen.number,
                    frozen.user_attrs.get("config", {}),
                    S.INTERRUPTED,
                    reason=f"its worker stopped beating its heartbeat for {self.grace_s} s; its configuration was queued "
                    "again for another worker",
                    started_at=frozen.datetime_start,
                    finished_at=now(),
                )
            )
        except DuplicateTrialError:
            return  # another worker settled it first
        if frozen.params:
            study.enqueue_trial(frozen.params, user_attrs={"retry_of": frozen.number})

    # -- the budget, shared -----------------------------------------------------------------

    def hold(self, study_id: int, name: str, what: str) -> ClaimRecord:
        """Claim ``name`` of the study, or wait for whoever holds it (taking it over when
        its holder stops beating): the claim once it is this worker's or done."""
        claim = self.store.claim(study_id, name, self.owner, self.grace_s)
        told = False
        while not claim.done and not claim.held_by(self.owner):
            if not told and self.say is not None:
                self.say(f"waiting for {claim.owner} to {what}")
                told = True
            time.sleep(POLL_S)
            claim = self.store.claim(study_id, name, self.owner, self.grace_s)
        if claim.held_by(self.owner):
            self.beats.claim = claim
            self.beats.start()
        return claim

    def release(self, study_id: int, name: str) -> None:
        """``name`` is done (when this worker held it)."""
        claim, self.beats.claim = self.beats.claim, None
        if claim is not None and claim.name == name and claim.study_id == study_id:
            self.store.finish_claim(claim.id, self.owner)

    def queue_first(self, study_id: int, queue: Callable[[], None]) -> None:
        """One worker queues the first configurations; the others wait for it."""
        self.hold(study_id, "start", "queue the first configurations")
        queue()
        self.release(study_id, "start")

    def sync(
        self, study: optuna.Study, study_id: int, trials: int | None, mine: tuple[dict[str, TrialRecord], int]
    ) -> tuple[dict[str, TrialRecord], int]:
        """What every worker has measured so far (config key -> its first trial) and how
        many trials count, whatever this worker counted (``mine``); waits while the rest
        of the budget is running elsewhere."""
        from optuna.trial import TrialState

        self.beats.trial_id = None  # this worker's last trial was told
        while True:
            self._fail_stale(study)
            rows = [r for r in self.store.trials(study_id) if r.status not in NOT_COUNTED]
            measured: dict[str, TrialRecord] = {}
            for row in rows:
                measured.setdefault(config_key(row.config), row)
            counted = len(rows)
            if trials is None or counted >= trials:
                return measured, counted
            if counted + len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))) < trials:
                return measured, counted
            time.sleep(POLL_S)

    # -- the finalists, once ----------------------------------------------------------------

    def finish(self, study: optuna.Study, study_id: int, decide: Callable[[], T]) -> T:
        """Once no trial of the study runs anywhere, one worker re-measures the finalists
        (``decide``); the others wait for it, then ``decide`` from the stored
        re-measurements (nothing runs again)."""
        from optuna.trial import TrialState

        self.beats.trial_id = None
        while True:
            self._fail_stale(study)
            if not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                break
            time.sleep(POLL_S)
        name = f"finalists@{max((t.number for t in study.get_trials(deepcopy=False)), default=-1)}"
        claim = self.hold(study_id, name, "re-measure the finalists")
        if claim.done:
            return decide()  # from the stored re-measurements
        try:
            outcome = decide()
        finally:
            self.beats.stop()
        self.release(study_id, name)
        return outcome


def fleet_for(join: bool, store: Store, recorder: Recorder, grace_s: int, say: Callable[[str], None] | None) -> Alone:
    """``Joined`` for `--join`, else ``Alone``."""
    return Joined(store, recorder, grace_s, say) if join else Alone(store, recorder)
