"""Finalists re-measured until their intervals separate, or until the cap says they
cannot be on this host (tuner.search.separation); fake processes, no workers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tuner.search import finalists as F
from tuner.search.separation import Bootstraps, remeasure_until_separated, separate
from tuner.trial import spec as S
from tuner.trial.measure import summarize


@dataclass
class Row:  # the fields of a TrialRecord that finalists read
    number: int
    config: dict
    id: int = 0


class Processes:
    """Each fresh process of a configuration: its own offset (log-normal between
    processes, or one of ``clusters``), then calls around it."""

    def __init__(self, true_ms: dict[str, float], between: float = 0.05, seed: int = 0,
                 clusters: dict[str, tuple[float, float]] | None = None) -> None:
        self.true_ms, self.between = true_ms, between
        self.clusters = clusters or {}
        self.rng = np.random.default_rng(seed)
        self.order: list[tuple[str, int]] = []

    def run(self, candidate: F.Candidate, round_: int) -> S.TrialResult:
        name = candidate.config["name"]
        self.order.append((name, round_))
        if name in self.clusters:
            fast, slow = self.clusters[name]
            median = fast if self.rng.random() < 0.5 else slow
        else:
            median = self.true_ms[name] * float(np.exp(self.rng.normal(0, self.between)))
        samples = list(median * np.exp(self.rng.normal(0, 0.02, 200)))
        return S.TrialResult(status=S.OK, samples_ms=samples, stats=summarize(samples))


def candidates(*names: str) -> list[F.Candidate]:
    found = [F.Candidate("default", {"name": names[0]})]
    found += [F.Candidate("candidate", {"name": n}, Row(i + 1, {"name": n})) for i, n in enumerate(names[1:])]
    return found


def test_finalists_that_separate_in_the_first_rounds_get_no_more():
    processes = Processes({"default": 10.0, "a": 5.0, "b": 7.0})
    found = candidates("default", "a", "b")
    separation = remeasure_until_separated("p50", found, 5, 12, processes.run)
    assert separation.separable and separation.extra == 0 and not separation.capped
    assert separation.leader is found[1] and [len(c.runs) for c in found] == [5, 5, 5]
    assert separation.describe() == "trial 1 is separated from every other candidate"


def test_inseparable_finalists_grow_to_the_cap_and_say_so():
    processes = Processes({"default": 10.0, "a": 5.0, "b": 5.0})
    found = candidates("default", "a", "b")
    extra = []
    separation = remeasure_until_separated("p50", found, 5, 9, processes.run, on_extra=extra.append)
    # The default is separated from the start: only the two finalists run again, in turn.
    assert [len(c.runs) for c in found] == [5, 9, 9] and extra == [2, 2, 2, 2]
    assert separation.capped and not separation.separable and separation.extra == 8 and separation.processes == 9
    assert [u.candidate for u in separation.undecided] == [c for c in found[1:] if c is not separation.leader]
    assert separation.describe().startswith("not separable on this host: trial ")
    stored = separation.to_dict()
    assert stored["separable"] is False and stored["capped"] is True and stored["undecided"][0]["role"] == "candidate"
    # Extra rounds are interleaved with a rotating order, like the first ones.
    assert [name for name, round_ in processes.order if round_ == 5] != [name for name, round_ in processes.order
                                                                         if round_ == 6]


def test_more_processes_separate_what_five_could_not():
    """Two finalists 8% apart with a 5% between-process spread: five processes each
    rarely tell them apart, a dozen usually do."""
    separated_at = []
    for seed in range(6):
        processes = Processes({"default": 10.0, "a": 5.0, "b": 5.4}, seed=seed)
        found = candidates("default", "a", "b")
        separation = remeasure_until_separated("p50", found, 5, 16, processes.run)
        if separation.separable:
            separated_at.append(separation.processes)
            assert separation.leader is found[1]  # the truly faster one
    assert len(separated_at) >= 4 and max(separated_at) > 5


def test_a_leader_close_to_the_default_runs_again_with_the_default():
    processes = Processes({"default": 10.0, "a": 10.0}, seed=2)
    found = candidates("default", "a")
    separation = remeasure_until_separated("p50", found, 5, 8, processes.run)
    assert [len(c.runs) for c in found] == [8, 8] and separation.undecided[0].candidate is found[0]
    decision = F.decide("p50", found[0], found[1:], separation=separation)
    assert decision.winner is found[0] and "not separable on this host: trial 1 from the stock default" in \
        decision.summary


def test_a_resumed_run_only_adds_what_is_missing():
    processes = Processes({"default": 10.0, "a": 5.0, "b": 5.0})
    found = candidates("default", "a", "b")
    remeasure_until_separated("p50", found, 5, 7, processes.run)
    before = len(processes.order)
    remeasure_until_separated("p50", found, 5, 7, processes.run)
    assert len(processes.order) == before


def test_failed_processes_neither_lead_nor_loop_forever():
    processes = Processes({"default": 10.0, "a": 5.0, "b": 5.0})
    found = candidates("default", "a", "b")

    def run(candidate: F.Candidate, round_: int) -> S.TrialResult:
        if candidate.config["name"] == "b" and round_ >= 1:
            return S.TrialResult(status="crashed", reason="killed")
        return processes.run(candidate, round_)

    separation = remeasure_until_separated("p50", found, 5, 8, run)
    assert separation.leader is found[1] and separation.separable  # b has 1 measured run: not comparable
    assert len(found[2].runs) == 5


def test_throughput_leads_by_the_higher_rate():
    processes = Processes({"default": 10.0, "a": 5.0, "b": 8.0})
    found = candidates("default", "a", "b")
    F.remeasure(found, 4, processes.run)
    boot = Bootstraps("throughput")
    separation = separate(boot, found)
    assert separation.leader is found[1] and separation.separable
    over = boot.leader_over(found[1], found[0])
    assert over.significant and over.contains(2.0)


def test_the_decision_states_clusters_separation_and_racing():
    processes = Processes({"default": 10.0, "b": 5.0}, clusters={"a": (4.0, 6.8)}, seed=3)
    found = candidates("default", "a", "b")
    separation = remeasure_until_separated("p50", found, 6, 8, processes.run)
    decision = F.decide("p50", found[0], found[1:], separation=separation)
    decision.raced = {"processes": 4, "configurations": 3}
    notes = decision.notes()
    assert notes[0].startswith("racing: 4 more fresh processes for 3 leading configurations")
    assert any("fall into speed clusters" in n and "trial 1" in n for n in notes), notes
    assert any(n.startswith("trial 1: 2 speed clusters") for n in notes), notes
    metrics = decision.metrics()
    assert metrics["clustered"] is True and metrics["noise"]["trial 1"]["clusters"]["clustered"] is True
    assert metrics["noise"]["the stock default"]["clusters"]["clustered"] is False
    assert metrics["raced"] == decision.raced and "separation" in metrics
    by_trial = {v.candidate.trial.number: v.to_dict() for v in decision.verdicts}
    assert by_trial[1]["clusters"]["clustered"] is True and by_trial[2]["drift"]["drifting"] is False
