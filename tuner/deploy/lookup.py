"""Reading the stored winner for this machine: shared by the CLI and the Python API.

A winner is a configuration; how to run it here (binding, LD_PRELOAD, variables) is
planned again on this machine by the same code trials use (tuner.trial.plan), so a
deployment gets exactly what was measured, including a numactl fallback to taskset
where this container refuses numactl.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from typing import Any

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
    unset: list[str] = field(default_factory=list)  # managed variables a deployment removes
    notes: list[str] = field(default_factory=list)  # e.g. "numactl refused here; bound with taskset"
    model_hash: str = ""
    # A throughput winner runs several processes: (prefix, env) of each; instance 0
    # is also ``prefix``/``env``.
    instances: list[tuple[list[str], dict[str, str]]] = field(default_factory=list)
    # The speedup's 95% confidence interval from the finalists' fresh-process re-runs,
    # and whether it excludes 1 (None: not re-measured).
    speedup_ci: tuple[float, float] | None = None
    significant: bool | None = None
    # The interpreter the winner's backend needs when it lives in its own environment
    # (ipex, onnxruntime_openvino: tuner.envs); None: any interpreter of this tuner.
    python: str | None = None
    # Where the winner was measured when it is not this machine's (`tuner best
    # --from-similar`): hostname, fingerprint and how alike; None: measured here.
    measured_on: dict[str, Any] | None = None

    @property
    def measured_here(self) -> bool:
        return self.measured_on is None

    def describe_speedup(self) -> str:
        """ "2.31x (95% CI 2.20-2.43)", or what is known."""
        if self.speedup is None:
            return "no speedup stated"
        if self.speedup_ci is None:
            return f"{self.speedup:.2f}x"
        return f"{self.speedup:.2f}x (95% CI {self.speedup_ci[0]:.2f}-{self.speedup_ci[1]:.2f})"

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "seq_len": self.seq_len,
            "batch": self.batch,
            "objective": self.objective,
            "config": self.config,
            "metrics": self.metrics,
            "speedup": self.speedup,
            "speedup_ci95": list(self.speedup_ci) if self.speedup_ci else None,
            "significant": self.significant,
            "default_median_ms": self.default_median_ms,
            "measured_here": self.measured_here,
            "measured_on": self.measured_on,
            "launch": {
                "prefix": self.prefix,
                "env": self.env,
                "unset": self.unset,
                "notes": self.notes,
                "python": self.python,
                "instances": [{"prefix": p, "env": e} for p, e in self.instances],
            },
        }

    def env_lines(self) -> list[str]:
        """``unset`` and ``export`` lines a shell can eval."""
        lines = [f"unset {' '.join(self.unset)}"] if self.unset else []
        return lines + [f"export {k}={shlex.quote(v)}" for k, v in self.env.items()]

    def shell_prefix(self, instance: int = 0) -> str:
        """One line to put before a command: binding, then ``env`` removing the managed
        variables the winner leaves unset and setting the rest (LD_PRELOAD included)."""
        prefix, env = self.instances[instance] if self.instances else (self.prefix, self.env)
        unset = [word for name in self.unset for word in ("-u", name)]
        parts = [*prefix, "env", *unset, *(f"{k}={v}" for k, v in env.items())]
        return " ".join(shlex.quote(p) for p in parts)


def model_key(model: str) -> str:
    """The content hash when the model resolves here, else the name as typed."""
    from tuner.model import resolve_model

    try:
        return resolve_model(model).content_hash
    except ModelNotFoundError:
        return model


def deploy_env(
    config: dict[str, Any],
    plan_env: dict[str, str],
    model_hash: str,
    seq_len: int,
    instance: int,
    instances: int,
    model_path: str | None = None,
) -> dict[str, str]:
    """The plan's variables plus what tells ``tuner.load_best`` inside the launched
    process which configuration it runs under (so it needs no database) and where the
    model is (a backend's own environment may not have the model's package)."""
    env = dict(plan_env)
    env["TUNER_CONFIG"] = json.dumps(config, sort_keys=True)
    env["TUNER_MODEL_HASH"] = model_hash
    if model_path:
        env["TUNER_MODEL_PATH"] = model_path
    env["TUNER_SEQ_LEN"] = str(seq_len)
    if instances > 1:
        env["TUNER_INSTANCE"] = str(instance)
        env["TUNER_INSTANCES"] = str(instances)
    return env


def best_configs(
    model: str,
    seq_len: int | None = None,
    batch: int = 1,
    objective: str = "p50",
    db_url: str | None = None,
    from_similar: bool = False,
    store: Any | None = None,
) -> list[BestConfig]:
    """Every stored winner for ``model`` on this machine (one per workload); where it
    has none and ``from_similar``, those of the most similar machine that has one,
    marked as not measured here (``measured_on``). ``store``: an open one to read
    (`tuner best` reads once for the winner and its staleness); else ``db_url`` is opened
    read-only (``tuner.store.open_reader``: without SQLAlchemy where it can be)."""
    from tuner.envs import worker_python
    from tuner.hardware import detect
    from tuner.hardware.libraries import MissingLibraryError
    from tuner.model import resolve_model
    from tuner.store import open_reader
    from tuner.trial.plan import plan_instances

    machine = detect()
    try:
        ref = resolve_model(model)
        key, model_path = ref.content_hash, ref.path
    except ModelNotFoundError:  # stored winners are still found by the name as typed
        key, model_path = model, None
    opened = store if store is not None else open_reader(db_url)
    measured_on: dict[str, Any] | None = None
    try:
        rows = opened.best(machine.fingerprint, key, seq_len=seq_len, batch=batch, objective=objective)
        if not rows and from_similar:
            peer = closest_winner(opened, machine, key, seq_len, batch, objective)
            if peer is not None:
                rows = opened.best(peer.fingerprint, key, seq_len=seq_len, batch=batch, objective=objective)
                measured_on = {
                    "hostname": peer.hostname,
                    "fingerprint": peer.fingerprint,
                    "similarity": peer.similarity.describe(),
                }
    finally:
        if opened is not store:
            opened.close()
    found = []
    for row in rows:
        config: dict[str, Any] = dict(row.config)
        carried: list[str] = []
        if measured_on is not None:  # another machine's: its configuration in this machine's space
            config, carried = carried_here(row.config, machine, objective)
        try:
            plans = plan_instances(config, machine)
        except MissingLibraryError as exc:
            raise UserError(
                f"the winner for {model} at seq {row.seq_len} preloads a library this machine lacks: {exc}"
            ) from None
        except ValueError as exc:
            raise UserError(
                f"the winner for {model} at seq {row.seq_len} cannot run here: {exc}; "
                f"run `tuner auto --model {model}` again"
            ) from None
        try:
            python = worker_python(config)
            env_notes: list[str] = []
        except UserError as exc:  # its environment is gone: shown, and launch refuses
            python, env_notes = None, [str(exc)]
        model_hash = row.content_hash
        per_instance = [
            (p.prefix, deploy_env(config, p.env, model_hash, row.seq_len, p.instance, p.instances, model_path))
            for p in plans
        ]
        found.append(
            BestConfig(
                model=model,
                seq_len=row.seq_len,
                batch=row.batch,
                objective=row.objective,
                config=config,
                metrics=row.metrics,
                speedup=row.speedup,
                default_median_ms=row.default_median_ms,
                prefix=per_instance[0][0],
                env=per_instance[0][1],
                unset=plans[0].unset,
                notes=carried + [n for p in plans for n in p.notes] + env_notes,
                model_hash=model_hash,
                instances=per_instance if len(plans) > 1 else [],
                speedup_ci=(row.speedup_low, row.speedup_high)
                if row.speedup_low is not None and row.speedup_high is not None
                else None,
                significant=row.significant,
                python=python,
                measured_on=None
                if measured_on is None
                else {**measured_on, **({"config": dict(row.config)} if config != row.config else {})},
            )
        )
    return sorted(found, key=lambda b: b.seq_len)


def best_config(
    model: str,
    seq_len: int | None = None,
    batch: int = 1,
    objective: str = "p50",
    db_url: str | None = None,
    from_similar: bool = False,
    store: Any | None = None,
) -> BestConfig:
    """The one stored winner; raises UserError when there is none or the choice is ambiguous."""
    found = best_configs(model, seq_len, batch, objective, db_url, from_similar, store)
    if not found:
        raise UserError(no_winner_message(model, seq_len, batch, objective, db_url, store))
    if len(found) > 1:
        lengths = [b.seq_len for b in found]
        if len(set(lengths)) < len(lengths):
            # A name that is not resolved here (not downloaded, offline) matches every
            # stored content of it: two revisions of a hub model tuned under one name.
            contents = ", ".join(sorted({b.model_hash[:12] for b in found}))
            raise UserError(
                f"{model} names several tuned models (contents {contents}) and is not found here to tell "
                "which; pass its folder, or its content hash (`tuner history --json` shows it) as --model"
            )
        raise UserError(
            f"{model} was tuned at several sequence lengths ({', '.join(map(str, lengths))}); pass --seq-len"
        )
    return found[0]


def carried_here(config: dict[str, Any], machine: Any, objective: str) -> tuple[dict[str, Any], list[str]]:
    """Another machine's winner in this machine's space (tuner.search._similar, as a
    fleet's warm start carries it): a value this machine lacks (more threads than its
    cores) takes the space's default, said in a note; unchanged when its backend is not here."""
    from tuner.search._similar import carried_over
    from tuner.search.objective import space_objective
    from tuner.space import load_space

    space = load_space(machine, objective=space_objective(objective))
    here, changed = carried_over(space, config)
    if here is None:
        return dict(config), [f"{changed}: printed as that machine ran it"]
    return here, [
        f"carried over to this machine: {changed} is not possible here, this space's default is used"
    ] if changed else []


def closest_winner(
    store: Any, machine: Any, model_key: str, seq_len: int | None, batch: int, objective: str
) -> Any | None:
    """The machine most like this one (tuner.hardware.similarity) with a winner for the
    model at this workload (a ``PeerRecord``), or None."""
    from tuner.store import rank_peers

    peers = store.peers(
        model_key, seq_len, batch, objective, winners_only=True, exclude_fingerprint=machine.fingerprint
    )
    ranked = rank_peers(peers, machine.hardware_fingerprint, machine.to_dict())
    return ranked[0] if ranked else None


def no_winner_message(
    model: str, seq_len: int | None, batch: int, objective: str, db_url: str | None, store: Any | None = None
) -> str:
    """This machine has no winner: what to run, and the most similar machine that has one."""
    from tuner.hardware import detect
    from tuner.store import open_reader

    where = f" at seq {seq_len}" if seq_len else ""
    retune = f"run `tuner auto --model {model}`{' --objective ' + objective if objective != 'p50' else ''} first"
    opened = store if store is not None else open_reader(db_url)
    try:
        peer = closest_winner(opened, detect(), model_key(model), seq_len, batch, objective)
    finally:
        if opened is not store:
            opened.close()
    text = f"no tuned configuration for {model}{where} (batch {batch}, {objective}) on this machine; {retune}"
    if peer is not None:
        text += (
            f"; the most similar machine with one is {peer.describe()}: `--from-similar` prints its winner, "
            "not measured here"
        )
    return text
