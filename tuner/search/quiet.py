"""Runs that avoid, detect and mark noise: what a study, its finalists and `tuner
verify` run every configuration through (docs/measurement.md).

Before a run the machine is checked (tuner.trial.noise.check_machine); while it is
busy the run waits up to ``wait_s`` (DEFAULT_NOISE_WAIT_S). The worker then measures how much CPU other
processes took on its CPUs while it was timed; a run disturbed that way is run again
(up to ``retries`` times), the quietest attempt is kept, and it is flagged "noisy"
when even that one was disturbed. Every check is kept in the result's ``noise``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

from tuner.trial import spec as S
from tuner.trial.plan import RuntimePlan
from tuner.vocabulary import DEFAULT_NOISE_RETRIES, DEFAULT_NOISE_WAIT_S

# How often to look whether a busy machine has calmed down.
NOISE_POLL_S = 0.5


def warn_to_stderr(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


class QuietRunner:
    def __init__(
        self,
        runner: Any,
        check: bool = True,
        retries: int = DEFAULT_NOISE_RETRIES,
        warn: Callable[[str], None] = warn_to_stderr,
        wait_s: float = DEFAULT_NOISE_WAIT_S,
    ) -> None:
        self.runner = runner  # a tuner.trial.runner.TrialRunner (or a replay of one)
        self.check = check
        self.retries = max(0, retries)
        self.warn = warn
        self.wait_s = wait_s

    def run(
        self,
        workload: S.Workload,
        config: dict[str, Any],
        reference: str | None,
        label: str,
        measure: S.MeasureSettings,
    ) -> tuple[S.TrialResult, RuntimePlan]:
        """Run ``config`` once or more (see the module docstring); never raises for a failed run."""
        from tuner.trial.measure import NOISY
        from tuner.trial.noise import describe

        self.runner.measure = measure
        attempts: list[tuple[S.TrialResult, RuntimePlan, dict[str, Any] | None]] = []
        for attempt in range(1 + self.retries):
            before = self.wait_for_quiet() if self.check else None
            result, plan = self.runner.run(workload, config, reference)
            attempts.append((result, plan, before))
            during = result.noise.get("during")
            if not (during and during.get("noisy")):
                break
            if attempt < self.retries:
                busy = f"; before it: {describe(before)}" if before and before.get("busy_processes") else ""
                self.warn(f"{label}: timed while the machine was busy ({describe(during)}{busy}); running it again")
        result, plan, before = min(attempts, key=lambda a: _other_cpu(a[0]))
        result.noise = {
            **result.noise,
            "before": before,
            "attempts": len(attempts),
            "noisy_attempts": sum(1 for a in attempts if (a[0].noise.get("during") or {}).get("noisy")),
        }
        during = result.noise.get("during") or {}
        if during.get("noisy"):
            result.flags = [*result.flags, NOISY]
            self.warn(f"{label}: marked noisy, other processes used its CPUs in every attempt ({describe(during)})")
        return result, plan

    def wait_for_quiet(self) -> dict[str, Any]:
        """The noise check before a run; while the machine is busy, wait a little for it.

        Not a warning by itself: what counts is whether the timed calls were disturbed,
        which the worker measures.
        """
        from tuner.trial.noise import check_machine

        report = check_machine()
        waited = 0.0
        while report["noisy"] and waited < self.wait_s:
            time.sleep(NOISE_POLL_S)
            waited += NOISE_POLL_S + report["seconds"]
            report = check_machine()
        report["waited_s"] = round(waited, 2)
        return report


def governor_warning(cpus: Iterable[int]) -> str | None:
    """Words for CPUs whose frequency governor lets the clock change between runs (None: none does)."""
    from tuner.trial.noise import governors

    slow = sorted({g for g in governors(cpus).values() if g != "performance"})
    if not slow:
        return None
    return (
        f"CPU frequency governor is {', '.join(slow)}: the clock may change between trials; "
        "`cpupower frequency-set -g performance` pins it"
    )


def _other_cpu(result: S.TrialResult) -> float:
    return float((result.noise.get("during") or {}).get("other_cpu", 0.0))
