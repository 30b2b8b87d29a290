"""A database server that goes away in the middle of a study (docs/fleet.md).

A measured trial's row is kept in a local journal file (under the data folder) before
it is written to the database, and dropped from the file once the database has it:

- the server went away while the trial ran: the write is retried with backoff for up
  to ``DB_RETRY_S`` (a restart, a failover); the study then goes on as if nothing
  happened;
- it stays away: the study stops with one line that says so, the row still in the
  journal; the same command, once the server is back, writes it (``replay``) before
  anything else, so the trial is neither measured again nor stored twice;
- the tuner is killed between the journal and the database: the same.

Anything else the study asks the database while it is gone (Optuna's ask, the pruner's
threshold) stops the study with one line (``lost_server``); the trials stored so far
are kept and the same command resumes it (tuner.search._reconcile).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, fields
from datetime import datetime
from pathlib import Path
from typing import Any

from tuner import paths
from tuner.errors import StoreError
from tuner.store import DuplicateTrialError, NewTrial, Store, connection_lost

# How long a measured trial's write waits for a database server that went away.
DB_RETRY_S = 120.0
# Seconds between attempts: quick at first (a restart takes a few), then every 15 s.
_BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0)


def journal_path(store: Store, study_name: str) -> Path:
    """The journal of one study in one database: ``<data dir>/journal/<digest>.jsonl``."""
    from tuner.store._engine import describe

    digest = hashlib.sha256(f"{describe(store.url)}\n{study_name}".encode()).hexdigest()[:16]
    return paths.data_dir() / "journal" / f"{digest}.jsonl"


class Journal:
    """Rows of one study kept on disk until the database has them."""

    def __init__(
        self, store: Store, study_name: str, retry_s: float = DB_RETRY_S, warn: Callable[[str], None] | None = None
    ) -> None:
        self.store = store
        self.study_name = study_name
        self.path = journal_path(store, study_name)
        self.retry_s = retry_s
        self.warn = warn or (lambda message: None)
        self.sleep = time.sleep

    def record(self, trial: NewTrial) -> int | None:
        """Keep ``trial`` on disk, write it (waiting for a server that went away), drop
        it from disk. Its id, or None when the trial number was already recorded (a
        retry whose first attempt did commit)."""
        self._keep(trial)
        row_id = self._write(trial)
        self._drop(trial.number)
        return row_id

    def replay(self, study_id: int) -> list[int]:
        """Write the rows an earlier run kept (the server was gone, or the tuner was
        killed before the write); the trial numbers written."""
        written = []
        for trial in self._kept():
            try:
                self.store.record_trial(_as_study(trial, study_id))
                written.append(trial.number)
            except DuplicateTrialError:
                pass  # it did reach the database (or another worker recorded that number)
            self._drop(trial.number)
        return written

    # -- the file ----------------------------------------------------------------------

    def _kept(self) -> list[NewTrial]:
        try:
            lines = self.path.read_text().splitlines()
        except FileNotFoundError:
            return []
        kept: dict[int, NewTrial] = {}
        for line in lines:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a kill: its trial was never written either
            if entry.get("study_name") == self.study_name:
                trial = _from_json(entry["trial"])
                kept[trial.number] = trial
        return [kept[n] for n in sorted(kept)]

    def _keep(self, trial: NewTrial) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"study_name": self.study_name, "trial": _to_json(trial)}) + "\n"
        with open(self.path, "a") as out:
            out.write(line)
            out.flush()
            os.fsync(out.fileno())

    def _drop(self, number: int) -> None:
        rest = [t for t in self._kept() if t.number != number]
        if not rest:
            self.path.unlink(missing_ok=True)
            return
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps({"study_name": self.study_name, "trial": _to_json(t)}) + "\n" for t in rest))
        os.replace(tmp, self.path)

    # -- the database ------------------------------------------------------------------

    def _write(self, trial: NewTrial) -> int | None:
        deadline = time.monotonic() + self.retry_s
        attempt = 0
        while True:
            try:
                row_id = self.store.record_trial(trial)
            except DuplicateTrialError:
                if attempt == 0:
                    raise
                return None  # the attempt the server dropped did commit
            except StoreError as exc:
                if not connection_lost(exc):
                    raise
                left = deadline - time.monotonic()
                if left <= 0:
                    raise StoreError(
                        f"the database server went away during trial {trial.number} and did not come back within "
                        f"{self.retry_s:.0f} s ({_cause(exc)}); the trial's result is kept in {self.path} and is "
                        "written when the same command runs again with the server back"
                    ) from exc
                if attempt == 0:
                    self.warn(
                        f"the database server went away ({_cause(exc)}); trial {trial.number}'s result is kept "
                        f"in {self.path}; retrying for up to {self.retry_s:.0f} s"
                    )
                self.sleep(min(_BACKOFF_S[min(attempt, len(_BACKOFF_S) - 1)], left))
                attempt += 1
                continue
            if attempt:
                self.warn(f"the database server is back; trial {trial.number} was written")
            return row_id


@contextmanager
def lost_server(store: Store) -> Iterator[None]:
    """Turn a lost database server, however it is raised (Optuna's storage, SQLAlchemy),
    into one line that says the study can be resumed."""
    from tuner.store._engine import describe

    try:
        yield
    except StoreError:
        raise
    except Exception as exc:
        if not connection_lost(exc):
            raise
        raise StoreError(
            f"lost the database server {describe(store.url)} during the study ({_cause(exc)}); the trials stored so "
            "far are kept: run the same command again when the server is back"
        ) from exc


def _cause(exc: BaseException) -> str:
    """The driver's first line, e.g. ``connection refused``."""
    current: BaseException | None = exc
    while current is not None:
        orig = getattr(current, "orig", None)
        if orig is not None:
            text = str(orig).strip().splitlines()
            return text[0] if text else type(orig).__name__
        current = current.__cause__ or current.__context__
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _to_json(trial: NewTrial) -> dict[str, Any]:
    data = asdict(trial)
    for key in ("started_at", "finished_at"):
        if isinstance(data[key], datetime):
            data[key] = data[key].isoformat()
    return data


def _from_json(data: dict[str, Any]) -> NewTrial:
    known = {f.name for f in fields(NewTrial)}
    values = {k: v for k, v in data.items() if k in known}
    for key in ("started_at", "finished_at"):
        if isinstance(values.get(key), str):
            values[key] = datetime.fromisoformat(values[key])
    return NewTrial(**values)


def _as_study(trial: NewTrial, study_id: int) -> NewTrial:
    from dataclasses import replace

    return replace(trial, study_id=study_id)
