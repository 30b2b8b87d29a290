"""A worker's heartbeats in a shared study (`tuner auto --join`, tuner.search._fleet).

Optuna's RDB storage keeps a heartbeat per running trial (``RDBStorage.record_heartbeat``)
and fails a trial whose heartbeat is older than its grace period. ``Study.optimize``
would beat it from a thread of its own; a study driven by ask and tell starts its own
thread instead, which also beats the claim the worker holds in the store (tuner.store's
claims), so that neither is taken over while this worker is alive.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tuner.store import ClaimRecord, Store

if TYPE_CHECKING:
    import optuna


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


class Heartbeat:
    """Beats, every ``interval_s`` while started, for the trial a worker runs (``trial_id``)
    and the claim it holds (``claim``); either may be None."""

    def __init__(self, store: Store, owner: str, interval_s: int) -> None:
        self.store = store
        self.owner = owner
        self.interval_s = interval_s
        self.storage: Any = None  # Optuna's storage with heartbeats (heartbeat_storage)
        self.trial_id: int | None = None  # the Optuna trial id this worker runs
        self.claim: ClaimRecord | None = None  # the claim this worker holds while it works on it
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Optuna expects heartbeats from Study.optimize; this study beats its own.
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")

    def beat(self) -> None:
        """One heartbeat for what this worker holds. A server that went away is waited
        for elsewhere (tuner.search._journal): a missed beat is only a missed beat."""
        try:
            if self.trial_id is not None and self.storage is not None:
                self.storage.record_heartbeat(self.trial_id)
            if self.claim is not None:
                self.store.beat_claim(self.claim.id, self.owner)
        except Exception:  # noqa: BLE001 - the next beat tries again
            pass

    def start(self) -> None:
        """Beat every ``interval_s`` from a thread (one at a time) until ``stop``."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(self.interval_s):
                self.beat()

        self._thread = threading.Thread(target=loop, name="tuner-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._thread = None
        self.trial_id = None
