"""Is each stored winner still right for this machine today? (`tuner status`)

For every workload this machine, a previous incarnation of it, or a similar machine
tuned, one of:

- ``fresh``: a winner stored for this machine as it is now (hardware and software
  fingerprint), chosen by this tuner version from today's search space for today's
  model weights, and not contradicted by its last `tuner verify`;
- ``stale``: the winner this machine would use was chosen under something that has
  changed since, each reason stated (``hardware changed: avx512_vnni appeared``,
  ``onnxruntime 1.22.0 -> 1.23.0``, ``search space changed``, ``model weights changed``,
  ``tuner 0.1.0 -> 0.2.0``);
- ``drifted``: fresh by what it depends on, but the last verify measured a speedup
  whose 95% interval excludes the stored one;
- ``missing``: never tuned with this machine's hardware and software, while a
  previous incarnation of it tuned it under other libraries its backend does not use,
  or a similar machine (same CPU) tuned it;
- ``unavailable``: the model cannot be found here any more.

A previous incarnation is a machine row with this hostname or this hardware
fingerprint. When there is none, this machine has no winner yet, and the database's
other machines all carry one hostname, the database was moved here from that
machine: its machines count as previous incarnations too, and a nightly run records
that host, so they keep counting once this machine has winners of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tuner._version import __version__
from tuner.errors import UserError
from tuner.nightly.depends import (
    hardware_changes,
    libraries_of_backend,
    library_changes,
    other_library_changes,
    same_cpu,
)
from tuner.nightly.verify import VerifyResult, last_verify

if TYPE_CHECKING:
    from tuner.hardware import MachineInfo
    from tuner.model import ModelRef
    from tuner.store import MachineRecord, Store, WinnerRecord

FRESH, STALE, DRIFTED, MISSING, UNAVAILABLE = "fresh", "stale", "drifted", "missing", "unavailable"
STATES: tuple[str, ...] = (FRESH, STALE, DRIFTED, MISSING, UNAVAILABLE)

# Where the judged winner was stored: for this machine as it is now, a previous
# incarnation of it, or a similar machine.
HERE, INCARNATION, SIMILAR = "here", "previous incarnation", "similar machine"


@dataclass
class WinnerStatus:
    model: str  # the name the model was first tuned under
    seq_len: int
    batch: int
    objective: str
    state: str  # STATES
    reasons: list[str]
    winner: "WinnerRecord | None"  # the winner judged (a re-tune starts from it)
    source: str  # HERE, INCARNATION or SIMILAR
    model_ref: "ModelRef | None" = None  # the model as it resolves here today
    verify: VerifyResult | None = None  # its last verify, when it is this machine's
    unrelated: list[str] = field(default_factory=list)  # changed libraries its backend does not use
    # Only libraries its backend does not use changed: a short re-tune that measures the
    # previous winner and finalists carries it over (docs/nightly.md).
    software_only: bool = False

    @property
    def key(self) -> tuple[str, int, int, str]:
        return (self.model, self.seq_len, self.batch, self.objective)

    def depends(self) -> dict[str, Any] | None:
        """What the winner depends on, as it was when chosen."""
        w = self.winner
        if w is None:
            return None
        libraries = w.machine.info.get("libraries") or {}
        return {
            "hardware_fingerprint": w.machine.hardware_fingerprint,
            "libraries": {
                name: libraries.get(name) for name in libraries_of_backend(str(w.best.config.get("backend")))
            },
            "tuner_version": w.tuner_version,
            "space_hash": w.space_hash,
            "model_hash": w.model.content_hash,
        }

    def describe_winner(self) -> str:
        from tuner.vocabulary import describe_config

        if self.winner is None:
            return "-"
        best = self.winner.best
        speedup = f"{best.speedup:.2f}x" if best.speedup is not None else "no speedup stated"
        config = best.config
        return (
            f"{config.get('backend')} {config.get('precision', '')}".strip()
            + f" ({speedup}); "
            + describe_config(config)
        )

    def to_dict(self) -> dict[str, Any]:
        w = self.winner
        winner = None
        if w is not None:
            best = w.best
            winner = {
                "config": best.config,
                "speedup": best.speedup,
                "speedup_ci95": [best.speedup_low, best.speedup_high]
                if best.speedup_low is not None and best.speedup_high is not None
                else None,
                "median_ms": best.metrics.get("median_ms"),
                "value": best.metrics.get("value"),
                "chosen": best.updated.isoformat(),
                "fingerprint": w.machine.fingerprint,
                "hostname": w.machine.hostname,
                "study": w.optuna_study_name,
            }
        return {
            "model": self.model,
            "seq_len": self.seq_len,
            "batch": self.batch,
            "objective": self.objective,
            "state": self.state,
            "reasons": list(self.reasons),
            "source": self.source,
            "model_hash": self.model_ref.content_hash if self.model_ref else None,
            "winner": winner,
            "depends": self.depends(),
            "last_verify": self.verify.to_dict() if self.verify else None,
            "unrelated_changes": list(self.unrelated),
        }


class Assessor:
    """Judges winners against ``machine`` as it is now. Caches what it resolves (models,
    today's space hashes, the backends a study searched) for one listing."""

    def __init__(
        self, store: "Store", machine: "MachineInfo", resolve: Callable[[str], "ModelRef"] | None = None
    ) -> None:
        self.store = store
        self.machine = machine
        self._resolve = resolve
        self._models: dict[str, tuple[ModelRef | None, str]] = {}
        self._spaces: dict[tuple[tuple[str, ...] | None, str], str] = {}
        self._backends: dict[str, list[str] | None] = {}
        self._optuna: Any = None
        self.previous_hosts: list[str] = []  # other hostnames taken for this machine's past (machines())

    def close(self) -> None:
        if self._optuna is not None:
            self._optuna.engine.dispose()
            self._optuna = None

    # -- what is there --------------------------------------------------------------

    def machines(self) -> tuple[set[int], set[int], set[int], list["MachineRecord"]]:
        """(this machine's ids, previous incarnations', similar machines', all)."""
        machines = self.store.machines()
        me = self.machine
        here = {m.id for m in machines if m.fingerprint == me.fingerprint}
        # Hosts an earlier nightly run of this host took for its past (a moved database).
        adopted = {
            h
            for run in self.store.nightly_runs(hostname=me.hostname)
            for h in run.settings.get("previous_hosts") or []
            if isinstance(h, str)
        }
        before = {
            m.id
            for m in machines
            if m.id not in here
            and (
                m.hostname == me.hostname or m.hostname in adopted or m.hardware_fingerprint == me.hardware_fingerprint
            )
        }
        others = [m for m in machines if m.id not in here]
        if (
            not before
            and len({m.hostname for m in others}) == 1
            and not (here and self.store.winners(machine_ids=sorted(here)))
        ):
            before = {m.id for m in others}  # a database moved here from one other machine
        self.previous_hosts = sorted({m.hostname for m in machines if m.id in before} - {me.hostname})
        now = me.to_dict()
        similar = {m.id for m in machines if m.id not in here | before and same_cpu(m.info, now)}
        return here, before, similar, machines

    def assess(self) -> list[WinnerStatus]:
        """A status per workload (model, seq_len, batch, objective), sorted."""
        here, before, similar, _ = self.machines()
        slots: dict[tuple[str, int, int, str], list[WinnerRecord]] = {}
        for w in self.store.winners(machine_ids=sorted(here | before | similar)):
            slots.setdefault((w.model.model_id, w.best.seq_len, w.best.batch, w.best.objective), []).append(w)
        return [self.judge_slot(key, found, here, before) for key, found in sorted(slots.items())]

    def judge_slot(
        self, key: tuple[str, int, int, str], found: list["WinnerRecord"], here: set[int], before: set[int]
    ) -> WinnerStatus:
        model, seq_len, batch, objective = key
        ref, why_not = self.model(model, found)

        def latest(ws: Iterable[WinnerRecord]) -> WinnerRecord | None:
            return max(ws, key=lambda w: w.best.updated, default=None)

        mine = [w for w in found if w.machine.id in here]
        earlier = [w for w in found if w.machine.id in before]
        source = HERE if mine else INCARNATION if earlier else SIMILAR
        winner = latest(mine) or latest(earlier) or latest(found)
        status = WinnerStatus(model, seq_len, batch, objective, UNAVAILABLE, [], winner, source, ref)
        if ref is None or winner is None:
            status.reasons = [why_not]
            return status
        if mine:
            current = [w for w in mine if w.model.content_hash == ref.content_hash]
            if current:
                status.winner = current[0]
                return self.judge_here(status)
            status.state, status.reasons = STALE, self.model_change(winner, ref) + self.version_change(winner)
            return status
        then = winner.machine.info
        backend = str(winner.best.config.get("backend"))
        reasons: list[str] = []
        if winner.machine.hardware_fingerprint != self.machine.hardware_fingerprint:
            changes = hardware_changes(then, self.machine.to_dict())
            reasons.append(
                "hardware changed: "
                + (
                    "; ".join(changes)
                    if changes
                    else f"fingerprint {winner.machine.hardware_fingerprint} -> {self.machine.hardware_fingerprint}"
                )
            )
        reasons += library_changes(backend, then.get("libraries") or {}, self.machine.libraries)
        reasons += self.version_change(winner) + self.model_change(winner, ref)
        if winner.machine.hardware_fingerprint == self.machine.hardware_fingerprint:
            reasons += self.space_change(winner)
        status.unrelated = other_library_changes(backend, then.get("libraries") or {}, self.machine.libraries)
        if source == SIMILAR:
            cpu = (then.get("cpu") or {}).get("model_name") or "same CPU"
            status.state = MISSING
            status.reasons = [f"tuned on a similar machine ({winner.machine.hostname}, {cpu}) but never here"]
        elif reasons:
            status.state, status.reasons = STALE, reasons
        else:
            status.state, status.software_only = MISSING, True
            status.reasons = [
                f"never tuned with this software; only libraries its backend does not use changed "
                f"({', '.join(status.unrelated) or 'none'})"
            ]
        return status

    def judge_here(self, status: WinnerStatus) -> WinnerStatus:
        """A winner stored for this machine as it is now: stale, drifted or fresh."""
        winner = status.winner
        assert winner is not None
        reasons = self.version_change(winner) + self.space_change(winner)
        status.verify = last_verify(self.store, winner)
        if reasons:
            status.state, status.reasons = STALE, reasons
        elif status.verify is not None and status.verify.holds is False:
            status.state = DRIFTED
            status.reasons = [
                f"the last verify ({status.verify.when:%Y-%m-%d %H:%M} UTC) measured {status.verify.describe()}"
            ]
        else:
            status.state = FRESH
            status.reasons = []
        return status

    # -- each dependency ------------------------------------------------------------

    def model(self, name: str, found: list["WinnerRecord"]) -> tuple["ModelRef | None", str]:
        """The model as it resolves here today (by the name it was tuned under, else the
        path it was last seen at), or None and why not."""
        if name not in self._models:
            from tuner.model import resolve_model

            resolve = self._resolve or resolve_model
            paths = [name] + sorted({w.model.path for w in found} - {name})
            why = f"model {name} is not found here"
            for candidate in paths:
                try:
                    self._models[name] = (resolve(candidate), "")
                    break
                except UserError as exc:
                    why = f"model {name} is not found here: {exc}"
            else:
                self._models[name] = (None, why)
        return self._models[name]

    @staticmethod
    def version_change(winner: "WinnerRecord") -> list[str]:
        if winner.tuner_version is None or winner.tuner_version == __version__:
            return []  # chosen before schema 0003 recorded the version: nothing to compare
        return [f"tuner {winner.tuner_version} -> {__version__}"]

    @staticmethod
    def model_change(winner: "WinnerRecord", ref: "ModelRef") -> list[str]:
        if winner.model.content_hash == ref.content_hash:
            return []
        return [f"model weights changed (content {winner.model.content_hash[:12]} -> {ref.content_hash[:12]})"]

    def space_change(self, winner: "WinnerRecord") -> list[str]:
        """["search space changed"] when today's space for the study's backends and
        objective on this machine hashes otherwise than the study's."""
        objective = winner.best.objective
        try:
            if self.space_hash(None, objective) == winner.space_hash:
                return []
            backends = self.study_backends(winner.optuna_study_name)
            if backends is None:
                return []  # which backends the study searched is unknown: no claim
            if self.space_hash(tuple(backends), objective) == winner.space_hash:
                return []
        except UserError as exc:
            return [f"search space changed: {exc}"]
        return ["search space changed"]

    def space_hash(self, backends: tuple[str, ...] | None, objective: str) -> str:
        key = (backends, objective)
        if key not in self._spaces:
            from tuner.space import load_space

            self._spaces[key] = load_space(
                self.machine, backends=list(backends) if backends else None, objective=objective
            ).content_hash()
        return self._spaces[key]

    def study_backends(self, study_name: str) -> list[str] | None:
        """The backends a study searched: the choices of its Optuna ``backend`` parameter
        (the tuner's own rows do not keep them)."""
        if study_name not in self._backends:
            self._backends[study_name] = None
            try:
                import optuna

                if self._optuna is None:
                    optuna.logging.set_verbosity(optuna.logging.WARNING)
                    # Its schema checked; read-only when the store is (`tuner best` on an image).
                    self._optuna = self.store.optuna_storage()
                study_id = self._optuna.get_study_id_from_name(study_name)
                for trial in self._optuna.get_all_trials(study_id, deepcopy=False):
                    distribution = trial.distributions.get("backend")
                    if distribution is not None:
                        self._backends[study_name] = [str(c) for c in distribution.choices]
                        break
            except (KeyError, ImportError, UserError):  # no such study, no Optuna, tables it cannot read
                pass
        return self._backends[study_name]


def assess(store: "Store", machine: "MachineInfo") -> list[WinnerStatus]:
    """Every workload's status on ``machine`` (see the module docstring)."""
    assessor = Assessor(store, machine)
    try:
        return assessor.assess()
    finally:
        assessor.close()


def judge_winners(
    store: "Store", machine: "MachineInfo", model_hash: str, seq_lens: Iterable[int], batch: int, objective: str
) -> list[WinnerStatus]:
    """The statuses of this machine's stored winners for one model (what `tuner best`
    returns), without looking at other machines."""
    wanted = set(seq_lens)
    assessor = Assessor(store, machine)
    try:
        # Only this machine's winners are judged, so only its row is needed: the machine
        # with this fingerprint, found through its winners of the model (without one it
        # has nothing to judge). Not Assessor.machines(), which reads every machine of
        # the database and its nightly runs, for the previous incarnations and similar
        # machines `tuner status` also judges: on a fleet's database (101 machines) that
        # took `tuner best` 8 ms, 5 of CPU, more than its other queries together.
        here = {b.machine_id for b in store.best(machine.fingerprint, model_hash, batch=batch, objective=objective)}
        found = []
        for w in store.winners(machine_ids=sorted(here)):
            best = w.best
            if (
                w.model.content_hash == model_hash
                and best.seq_len in wanted
                and best.batch == batch
                and best.objective == objective
            ):
                status = WinnerStatus(w.model.model_id, best.seq_len, batch, objective, FRESH, [], w, HERE)
                found.append(assessor.judge_here(status))
        return found
    finally:
        assessor.close()
