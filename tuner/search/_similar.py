"""A fleet's warm start (docs/fleet.md): a new study first measures what the most
similar machines found best for the same model and workload, then searches.

The machines are ranked by tuner.store.rank_peers (same hardware fingerprint, then
the same CPU model and ISA, then the same vendor and ISA class, then any machine);
only the closest level that has results is used, at most ``WARM_MACHINES`` of its
machines. Their winners come first, then their studies' best passing configurations,
one of each machine in turn, at most ``WARM_CONFIGS`` in all from machines with the
same hardware or CPU, 3 from the same ISA class, 1 (a winner) from any other.

A configuration is carried over in this machine's space: a value the space does not
have here (8 threads on 2 cores, bf16 where the CPU lacks it, a knob of another
version of the space) takes this space's default; one whose backend cannot run here
is left out and said so. What is queued runs as any trial does: one that is invalid
here or fails the accuracy guard is stored with its reason and the search goes on,
so a warm start costs at most its few trials.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tuner.hardware.similarity import Similarity
from tuner.search import objective as objectives
from tuner.store import rank_peers
from tuner.vocabulary import Objective, config_key

if TYPE_CHECKING:
    # Types only: `tuner best --from-similar` imports this module (carried_over) and
    # reads through the lean reader; the Store class and the records of studies would
    # cost it their import for nothing.
    from tuner.hardware import MachineInfo
    from tuner.space import Space
    from tuner.store import PeerRecord, Store, StudyRecord

# The closest machines whose results a new study starts from.
WARM_MACHINES = 3
# Configurations queued at most: the local search then centres on the best of them
# (it takes up to 5 centres, tuner.search.strategy.LOCAL_CENTRES).
WARM_CONFIGS = 5
# ...fewer from machines less alike: their recipe (backend, precision, quantization)
# tends to carry over, their runtime knobs (threads, binding, allocator) less so, and
# each configuration queued is a trial this study spends (docs/benchmarks.md).
CONFIGS_BY_SIMILARITY = {
    Similarity.SAME_HARDWARE: WARM_CONFIGS,
    Similarity.SAME_CPU: WARM_CONFIGS,
    Similarity.SAME_CLASS: 3,
    Similarity.ANY: 1,
}


@dataclass(frozen=True)
class SimilarStart:
    """What a study starts from: the machines, their configurations in this space, and
    those that cannot run here, each with why."""

    level: Similarity | None = None
    sources: tuple[PeerRecord, ...] = ()
    configs: tuple[dict[str, Any], ...] = ()
    not_here: tuple[tuple[dict[str, Any], str], ...] = field(default_factory=tuple)

    def describe(self, seq_len: int) -> str:
        if self.level is None:
            return f"seq {seq_len}: no other machine has results for this model and workload; a cold start"
        names = ", ".join(p.hostname for p in self.sources)
        text = (
            f"seq {seq_len}: starting from {len(self.configs)} configuration{'s' if len(self.configs) != 1 else ''} "
            f"of {names} ({self.level.describe()})"
        )
        if self.not_here:
            text += f"; {len(self.not_here)} cannot run here ({self.not_here[0][1]})"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "similarity": self.level.name.lower() if self.level is not None else None,
            "from": [{"hostname": p.hostname, "fingerprint": p.fingerprint} for p in self.sources],
            "configs": [dict(c) for c in self.configs],
            "not_here": [{"config": dict(c), "why": why} for c, why in self.not_here],
        }


def carried_over(space: Space, config: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """``config`` in ``space``: its values where the space has them, else the space's
    defaults; (None, why) when its backend is not in the space."""
    backend = config.get("backend")
    if not isinstance(backend, str) or backend not in space.backends:
        why = next((p.reason for p in space.pruned if p.dimension == "backend" and p.choice == backend), None)
        return None, f"backend {backend} {'cannot run here: ' + why if why else 'is not in this space'}"
    here: dict[str, Any] = {"backend": backend}
    changed = []
    for dim in space.dimensions(backend):
        if not dim.active(here):
            continue
        value = config.get(dim.name)
        if dim.name in config and dim.allows(value):
            here[dim.name] = value
        else:
            here[dim.name] = dim.default if dim.allows(dim.default) else dim.values()[0]
            if dim.name in config:
                changed.append(f"{dim.name}={value!r}")
    return here, ", ".join(changed)


def similar_start(
    store: Store,
    machine: MachineInfo,
    model_hash: str,
    seq_len: int,
    batch: int,
    objective: str,
    space: Space,
    exclude_study: int | None = None,
) -> SimilarStart:
    """The configurations the closest machines with results for (``model_hash``,
    ``seq_len``, ``batch``, ``objective``) found best, in ``space``; the study
    ``exclude_study`` (the one starting) does not count."""
    if objective == Objective.PARETO:  # a front has no single best to start from
        return SimilarStart()
    peers = []
    for peer in store.peers(model_hash, seq_len, batch, objective):
        studies = tuple(s for s in peer.study_ids if s != exclude_study)
        if studies or peer.best is not None:
            peers.append(_replace_studies(peer, studies))
    if not peers:
        return SimilarStart()
    ranked = rank_peers(peers, machine.hardware_fingerprint, machine.to_dict())
    level = ranked[0].similarity
    chosen = [p for p in ranked if p.similarity == level][:WARM_MACHINES]
    limit = CONFIGS_BY_SIMILARITY[level]
    descending = objectives.direction(objective) == "maximize"
    candidates: list[dict[str, Any]] = [dict(p.best.config) for p in chosen if p.best is not None]
    tops = [store.top_trials(p.study_ids[0], WARM_CONFIGS, descending) if p.study_ids else [] for p in chosen]
    for rank in range(WARM_CONFIGS):  # one of each machine in turn
        candidates += [top[rank][0] for top in tops if rank < len(top)]
    configs: list[dict[str, Any]] = []
    not_here: list[tuple[dict[str, Any], str]] = []
    seen: set[str] = set()
    for config in candidates:
        here, why = carried_over(space, config)
        if here is None:
            if config_key(config) not in {config_key(c) for c, _ in not_here}:
                not_here.append((config, why))
            continue
        if config_key(here) in seen:
            continue
        seen.add(config_key(here))
        configs.append(here)
        if len(configs) >= limit:
            break
    return SimilarStart(level, tuple(chosen), tuple(configs), tuple(not_here))


def _replace_studies(peer: PeerRecord, studies: tuple[int, ...]) -> PeerRecord:
    from dataclasses import replace

    return replace(peer, study_ids=studies)


class SimilarMachines:
    """The hook a study calls with its first configurations (tuner.search.study)."""

    def __init__(
        self,
        store: Store,
        machine: MachineInfo,
        model_hash: str,
        space: Space,
        objective: str,
        batch: int,
        enabled: bool = True,
        say: Callable[[str], None] | None = None,
    ) -> None:
        # Where the other machines' results are read: the study's own database (a
        # benchmark may point it at another, whose studies then are never this one).
        self.store = store
        self._study_store = store
        self.machine = machine
        self.model_hash = model_hash
        self.space = space
        self.objective = objective
        self.batch = batch
        self.enabled = enabled
        self.say = say
        self.last: SimilarStart | None = None

    def first(self, first: Sequence[dict[str, Any]], study: StudyRecord) -> list[dict[str, Any]]:
        """``first`` (the stock default, then the strategy's start) with the similar
        machines' configurations right after the default. A resumed study computes the
        same list (the other machines' results, not its own), so its warm start's
        length is the same as when it began."""
        first = list(first)
        if not self.enabled or not first:
            return first
        start = similar_start(
            self.store,
            self.machine,
            self.model_hash,
            study.seq_len,
            self.batch,
            self.objective,
            self.space,
            exclude_study=study.id if self.store is self._study_store else None,
        )
        self.last = start
        if self.say is not None and study.n_trials == 0 and start.level is not None:
            self.say(start.describe(study.seq_len))
        default, rest = first[0], first[1:]
        similar = [c for c in start.configs if c != default]
        return [default, *similar, *(c for c in rest if c not in similar)]
