"""Several machines with the same fingerprint sharing one Optuna study (``Joined``:
`tuner auto --join`, docs/fleet.md); a study run alone needs none of this.

Optuna's RDB storage is the engine of a shared study, nothing home-made: ``ask``
hands each trial to exactly one worker (a queued trial is taken with ``SELECT ... FOR
UPDATE``), each worker beats the heartbeat of the trial it runs
(``RDBStorage.record_heartbeat``: ``Study.optimize`` would start that thread, a study
driven by ask and tell starts its own), and ``optuna.storages.fail_stale_trials`` fails
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
import threading
import time
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

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


def heartbeat_storage(
    url: str, heartbeat_s: int, grace_s: int, on_stale: Callable[[optuna.Study, optuna.trial.FrozenTrial], None]
) -> Any:
    """Optuna's storage on the store's database (its schema already checked by the
    store), with heartbeats; connections are tested before use, as the store's are."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs={"pool_pre_ping": True},
            skip_compatibility_check=True,
            heartbeat_interval=heartbeat_s,
            grace_period=grace_s,
            heartbeat_stale_trial_callback=on_stale,
        )


class Joined:
    """One of several workers sharing the study (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        recorder: Recorder,
        grace_s: int = DEFAULT_GRACE_S,
        say: Callable[[str], None] | None = None,
        owner: str | None = None,
    ) -> None:
        self.store = store
        self.recorder = recorder
        self.grace_s = int(grace_s)
        self.heartbeat_s = max(1, min(10, self.grace_s // 4))
        self.say = say
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}"
        self.study_id: int | None = None
        self._storage: Any = None
        self._beating: int | None = None  # the Optuna trial id this worker runs
        self._claim: ClaimRecord | None = None  # the claim this worker holds while it works on it
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Optuna expects heartbeats from Study.optimize; this study beats its own.
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")

    # -- Optuna's storage and its heartbeats ------------------------------------------------

    def storage(self, url: str) -> Any:
        self._storage = heartbeat_storage(url, self.heartbeat_s, self.grace_s, self._on_stale)
        return self._storage

    def running(self, trial: optuna.Trial) -> None:
        """``trial`` is this worker's now: beat its heartbeat (once at once, then every
        ``heartbeat_s``) until the next one."""
        self._beating = trial._trial_id
        self._beat()
        self._start_beating()

    def _beat(self) -> None:
        """One heartbeat for what this worker holds. A server that went away is waited
        for elsewhere (tuner.search._journal): a missed beat is only a missed beat."""
        try:
            if self._beating is not None and self._storage is not None:
                self._storage.record_heartbeat(self._beating)
            if self._claim is not None:
                self.store.beat_claim(self._claim.id, self.owner)
        except Exception:  # noqa: BLE001 - the next beat tries again
            pass

    def _start_beating(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(self.heartbeat_s):
                self._beat()

        self._thread = threading.Thread(target=loop, name="tuner-heartbeat", daemon=True)
        self._thread.start()

    def _stop_beating(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._thread = None
        self._beating = None

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
            self._claim = claim
            self._start_beating()
        return claim

    def release(self, study_id: int, name: str) -> None:
        """``name`` is done (when this worker held it)."""
        claim, self._claim = self._claim, None
        if claim is not None and claim.name == name and claim.study_id == study_id:
            self.store.finish_claim(claim.id, self.owner)

    def sync(self, study: optuna.Study, study_id: int, trials: int | None) -> tuple[dict[str, TrialRecord], int]:
        """What every worker has measured so far (config key -> its first trial) and how
        many trials count; waits while the rest of the budget is running elsewhere."""
        from optuna.trial import TrialState

        self._beating = None  # this worker's last trial was told
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

        self._beating = None
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
            self._stop_beating()
        self.release(study_id, name)
        return outcome
