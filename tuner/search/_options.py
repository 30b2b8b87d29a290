"""What one tuning run is asked to do: ``TuneOptions`` (the CLI's `tuner auto` builds one),
and the trial runner they ask for."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.errors import UserError
from tuner.trial import spec as S
from tuner.trial.accuracy import Guard
from tuner.vocabulary import (
    DEFAULT_FINALIST_MAX_ROUNDS,
    DEFAULT_FINALIST_ROUNDS,
    DEFAULT_FINALISTS,
    DEFAULT_NOISE_RETRIES,
    DEFAULT_NOISE_WAIT_S,
    DEFAULT_OBJECTIVE,
    DEFAULT_PRUNE_MARGIN,
    DEFAULT_RACE_EVERY,
    DEFAULT_SKIP_DOMINATED,
    DEFAULT_STRATEGY,
    DEFAULT_TRIALS,
    MIN_FINALIST_ROUNDS,
    OBJECTIVES,
    STRATEGIES,
)

if TYPE_CHECKING:
    from tuner.hardware import MachineInfo
    from tuner.model import ModelRef
    from tuner.space import Space
    from tuner.trial.runner import TrialRunner


# A trial's limit for a model of MiniLM-L6-H384's size (its parameter count), and for
# anything smaller; a larger model's limit grows in proportion to its parameters
# (docs/measurement.md: "How long a trial may take").
DEFAULT_TRIAL_TIMEOUT_S = 600.0
TRIAL_TIMEOUT_PARAMETERS = 22_713_728


def trial_timeout_for(parameters: int) -> float:
    """The default per-trial limit, in seconds, for a model of ``parameters``: what a
    trial pays beyond its fixed start (conversion, calibration, the accuracy check and
    the timed calls) grows about linearly with the parameters."""
    return DEFAULT_TRIAL_TIMEOUT_S * max(1.0, parameters / TRIAL_TIMEOUT_PARAMETERS)


def trial_runner(options: TuneOptions, model: ModelRef, machine: MachineInfo, eval_texts: list[str]) -> TrialRunner:
    """The process runner ``options`` ask for: the reference run and every trial get the
    same limit, scaled to the model unless one was given."""
    from tuner.model import parameter_count
    from tuner.trial.forkserver import ForkServers
    from tuner.trial.runner import TrialRunner

    timeout = options.trial_timeout_s or trial_timeout_for(parameter_count(model))
    servers = ForkServers() if options.fork_servers else None
    return TrialRunner(model, machine, eval_texts, options.measure, timeout, servers=servers)


@dataclass
class TuneOptions:
    model: str
    seq_lens: list[int]
    batch: int = 1
    trials: int | None = DEFAULT_TRIALS
    budget_s: float | None = None
    objective: str = DEFAULT_OBJECTIVE
    db_url: str | None = None
    eval_texts: list[str] | None = None
    guard: Guard = field(default_factory=Guard)
    trial_timeout_s: float | None = None  # None: scaled to the model's size (trial_timeout_for)
    seed: int | None = None
    measure: S.MeasureSettings = field(default_factory=S.MeasureSettings)
    space: Space | None = None  # a Space to search instead of search_spaces/ (benchmarks restrict it)
    backends: list[str] | None = None  # only these backends of search_spaces/ (None: all)
    space_files: list[Path] = field(default_factory=list)  # --space: TOML files read over search_spaces/
    seed_configs: list[dict[str, Any]] = field(default_factory=list)  # measured right after the warm start
    similar_start: bool = True  # a new study first measures the most similar machines' best (docs/fleet.md)
    # Several machines with this fingerprint share the study (`--join`, tuner.search._fleet); a
    # trial whose worker stopped beating its heartbeat this long is run again by another.
    join: bool = False
    join_grace_s: int = 180
    db_retry_s: float = 120.0  # how long a measured trial's write waits for a server that went away
    strategy: str = DEFAULT_STRATEGY
    max_memory_mb: float | None = None  # constraint: peak RSS of the worker
    prune: bool = True  # early stopping after a short first measurement
    prune_margin: float = DEFAULT_PRUNE_MARGIN  # "clearly slower": a short median this much above the best
    finalists: int = DEFAULT_FINALISTS  # re-measured at the end (0: the search's best wins)
    finalist_rounds: int = DEFAULT_FINALIST_ROUNDS  # fresh processes per finalist, and for the default
    # ...then more for those the leader cannot be told apart from, up to this many (tuner.search.separation)
    finalist_max_rounds: int = DEFAULT_FINALIST_MAX_ROUNDS
    race_every: int = DEFAULT_RACE_EVERY  # racing: re-measure the leaders after every N trials (0: off)
    noise_check: bool = True  # check the machine before each trial
    noise_retries: int = DEFAULT_NOISE_RETRIES  # re-runs of a trial timed while the machine was noisy
    noise_wait_s: float = DEFAULT_NOISE_WAIT_S  # how long a run waits for a busy machine to calm down
    record_best: bool = True  # False: a benchmark's study, which must not replace the stored winner
    # Structured search, latency objectives: once the warm start has measured every
    # backend, a proposal for a backend whose every measurement is at least this many
    # times the best feasible median is not run (stored "skipped"; 0 disables).
    skip_dominated: float = DEFAULT_SKIP_DOMINATED
    # Torch-family trials forked by preloaded fork servers (tuner.trial.forkserver);
    # False: every worker starts cold.
    fork_servers: bool = True

    def validate(self) -> None:
        """Raise UserError for choices no study can run with, before anything is opened
        or created (the CLI checks the same ranges when it parses the command line)."""
        ranges = [
            ("batch", self.batch >= 1, "1 or more"),
            ("trials", self.trials is None or self.trials >= 1, "1 or more"),
            ("budget", self.budget_s is None or self.budget_s > 0, "above 0 seconds"),
            ("trial timeout", self.trial_timeout_s is None or self.trial_timeout_s > 0, "above 0 seconds"),
            ("finalists", self.finalists >= 0, "0 (off) or more"),
            ("prune margin", self.prune_margin > 0, "above 0"),
            ("noise retries", self.noise_retries >= 0, "0 or more"),
            ("noise wait", self.noise_wait_s >= 0, "0 or more seconds"),
            ("skip-dominated ratio", self.skip_dominated == 0 or self.skip_dominated > 1, "0 (off) or above 1"),
            ("max memory", self.max_memory_mb is None or self.max_memory_mb > 0, "above 0 MB"),
        ]
        ranges += [
            (f"guard {name}", 0.0 <= value <= 1.0, "between 0 and 1")
            for name, value in (
                ("min cosine", self.guard.min_cosine_mean),
                ("min cosine min", self.guard.min_cosine_min),
                ("min label agreement", self.guard.min_label_agreement),
            )
        ]
        for name, ok, allowed in ranges:
            if not ok:
                raise UserError(f"the {name} must be {allowed}")
        if not self.seq_lens or any(not 1 <= s <= 8192 for s in self.seq_lens):
            raise UserError(f"sequence lengths must be between 1 and 8192, not {self.seq_lens}")
        if self.objective not in OBJECTIVES:
            raise UserError(f"unknown objective {self.objective!r}; choose one of {', '.join(OBJECTIVES)}")
        if self.strategy not in STRATEGIES:
            raise UserError(f"unknown strategy {self.strategy!r}; choose one of {', '.join(STRATEGIES)}")
        if self.finalists and self.finalist_rounds < MIN_FINALIST_ROUNDS:
            raise UserError(
                f"finalists are re-measured in at least {MIN_FINALIST_ROUNDS} fresh processes each; "
                f"pass {MIN_FINALIST_ROUNDS} or more rounds"
            )
