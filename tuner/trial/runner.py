"""Run one configuration as one trial process: used by studies, benchmarks and replays,
so every figure the project prints comes from the same harness."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from tuner import paths
from tuner.errors import UserError
from tuner.trial import spec as S
from tuner.trial.launch import RuntimePlan, plan_runtime, run_worker


@dataclass
class TrialRunner:
    model: S.ModelRef
    machine: object  # tuner.hardware.MachineInfo
    eval_texts: list[str]
    measure: S.MeasureSettings = field(default_factory=S.MeasureSettings)
    timeout_s: float = 600.0
    cache_dir: Path = field(default_factory=paths.cache_dir)

    def _spec(self, workload: S.Workload, config: dict, reference: str | None, mode: str = "trial") -> S.TrialSpec:
        return S.TrialSpec(
            model=self.model, workload=workload, config=config, cache_dir=str(self.cache_dir),
            eval_texts=self.eval_texts, reference_path=reference, mode=mode, measure=self.measure,
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

    def run(self, workload: S.Workload, config: dict, reference: str | None) -> tuple[S.TrialResult, RuntimePlan]:
        """One fresh process for ``config``; never raises for a failed trial."""
        try:
            plan = plan_runtime(config, self.machine)
        except ValueError as exc:
            return S.TrialResult(status=S.UNSUPPORTED, reason=str(exc)), RuntimePlan()
        spec = self._spec(workload, config, reference)
        spec.expected_cpus = plan.cpus
        return run_worker(spec, plan, self.timeout_s), plan
