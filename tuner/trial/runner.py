"""Run one configuration as one trial: used by studies, benchmarks, `tuner measure`
and replays, so every figure the project prints comes from the same harness.

The runner plans the process (binding, preloads, variables), runs the worker (or a
throughput config's instances side by side), and checks what the probe saw against
what the plan asked for: a trial whose settings did not take comes back ``invalid``
with every difference in words, never as a result.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from tuner import paths
from tuner.errors import UserError
from tuner.hardware.libraries import MissingLibraryError
from tuner.model import ModelRef
from tuner.trial import spec as S
from tuner.trial.forkserver import ForkServers
from tuner.trial.launch import RuntimePlan, run_worker, run_workers
from tuner.trial.plan import plan_instances, threads_per_instance
from tuner.trial.probe import differences
from tuner.trial.throughput import combine

if TYPE_CHECKING:
    from tuner.hardware import MachineInfo

# What ld.so prints when a preload library cannot be loaded; it then runs without it.
_PRELOAD_ERROR = "from LD_PRELOAD cannot be preloaded"


@dataclass
class TrialRunner:
    model: ModelRef
    machine: "MachineInfo"
    eval_texts: list[str]
    measure: S.MeasureSettings = field(default_factory=S.MeasureSettings)
    timeout_s: float = 600.0
    cache_dir: Path = field(default_factory=paths.cache_dir)
    # Fork servers for backends with heavy imports (None: every worker starts cold);
    # the owner closes them (close()).
    servers: ForkServers | None = None

    def close(self) -> None:
        if self.servers is not None:
            self.servers.close()

    def _spec(self, workload: S.Workload, config: dict, reference: str | None, mode: str = "trial") -> S.TrialSpec:
        return S.TrialSpec(
            model=self.model,
            workload=workload,
            config=config,
            cache_dir=str(self.cache_dir),
            eval_texts=self.eval_texts,
            reference_path=reference,
            mode=mode,
            measure=self.measure,
        )

    def reference(self, workload: S.Workload) -> str:
        """The fp32 eager outputs every trial is compared with; computed once, cached."""
        texts_hash = hashlib.sha256("\n".join(self.eval_texts).encode()).hexdigest()[:16]
        folder = self.cache_dir / "references"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.model.content_hash[:24]}-seq{workload.seq_len}-{texts_hash}.npz"
        if path.exists():
            return str(path)
        config = {"backend": "torch", "precision": "fp32", "threads": self.machine.physical_cores_available}
        spec = self._spec(workload, config, str(path), mode="reference")
        result = run_worker(spec, RuntimePlan(), self.timeout_s)
        if result.status != S.OK or not path.exists():
            last = (result.stderr_tail.strip().splitlines() or [""])[-1]
            raise UserError(f"the fp32 reference run of {self.model.model_id} failed: {result.reason} {last}".strip())
        return str(path)

    def run(
        self,
        workload: S.Workload,
        config: dict,
        reference: str | None,
        python: str | None = None,
    ) -> tuple[S.TrialResult, RuntimePlan]:
        """One fresh process for ``config`` (one per instance for a throughput config);
        never raises for a failed trial. ``python`` is the interpreter of the worker
        (a backend may live in its own environment); default: this one.

        Returns the result (``invalid`` when the probe disagrees with the plan) and
        the plan of the first process.
        """
        try:
            plans = plan_instances(config, self.machine)
        except MissingLibraryError as exc:
            # The configuration asks for something this machine lacks: invalid, with why.
            return S.TrialResult(status=S.INVALID, reason=str(exc)), RuntimePlan()
        except ValueError as exc:
            return S.TrialResult(status=S.UNSUPPORTED, reason=str(exc)), RuntimePlan()
        if python is None:
            # A backend that declares an [env] (ipex, ...) runs in that environment's interpreter.
            from tuner.envs import worker_python

            try:
                python = worker_python(config)
            except UserError as exc:
                return S.TrialResult(status=S.UNSUPPORTED, reason=str(exc)), RuntimePlan()
        worker_config = dict(config)
        if "instances" in config:
            # A throughput config divides the cores; each worker reads its share as threads.
            worker_config["threads"] = threads_per_instance(config, self.machine)
        specs = []
        for plan in plans:
            # Only the first instance checks accuracy: they all run the same artifact.
            spec = self._spec(workload, worker_config, reference if plan.instance == 0 else None)
            specs.append(replace(spec, expected_cpus=plan.cpus, instance=plan.instance, instances=plan.instances))
        if "instances" in config:
            results = run_workers(specs, plans, self.timeout_s, python, synchronized=True)
            verified = [verify(r, p) for r, p in zip(results, plans)]
            return combine(verified, workload.batch), plans[0]
        from tuner.backends import preload_modules

        preload = preload_modules(config["backend"], self.model.path) if self.servers is not None else []
        result = run_worker(specs[0], plans[0], self.timeout_s, python, self.servers, preload)
        return verify(result, plans[0]), plans[0]


def verify(result: S.TrialResult, plan: RuntimePlan) -> S.TrialResult:
    """``result`` marked invalid when its probe disagrees with ``plan`` (the samples
    are kept for inspection, but an invalid trial has no value)."""
    if result.status != S.OK:
        return result
    problems = differences(plan.expect, result.effective)
    if not problems:
        if plan.notes:
            result.effective = {**result.effective, "notes": list(plan.notes)}
        return result
    refused = [line.strip() for line in result.stderr_tail.splitlines() if _PRELOAD_ERROR in line]
    if refused:
        problems.append(refused[0])
    result.status = S.INVALID
    result.reason = "; ".join(problems)
    result.effective = {**result.effective, "notes": list(plan.notes)} if plan.notes else result.effective
    return result
