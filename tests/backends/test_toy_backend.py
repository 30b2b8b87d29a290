"""A backend is one module plus one TOML file (docs/backends/README.md): a toy backend
written in a temporary folder, its file beside copies of the shipped ones, appears in
`tuner space` and runs a trial through `tuner measure`, with no other file touched."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tuner.paths import search_spaces_dir

TOY_TOML = '''\
format = 1
help = "A toy backend written outside the tuner: PyTorch eager, fp32, under its own name."

[backend]
module = "toy_backend:ToyBackend"
uses = ["openmp"]          # torch computes with OpenMP: the openmp knobs apply
libraries = ["torch", "transformers"]

[requires]
modules = ["torch", "transformers"]

[dimensions.precision]
help = "fp32 only."
choices = ["fp32"]
default = "fp32"
'''

TOY_MODULE = textwrap.dedent('''
    """The toy backend: the model as transformers loads it, timed under inference_mode."""

    from __future__ import annotations

    from typing import Any

    import numpy as np

    from tuner.errors import UnsupportedConfigError


    class ToyPredictor:
        def __init__(self, model: Any, task: str) -> None:
            self.model, self.task = model, task
            self.timings: dict[str, float] = {}

        def bind(self, inputs: dict[str, np.ndarray]) -> dict[str, Any]:
            import torch

            return {name: torch.from_numpy(np.ascontiguousarray(array)) for name, array in inputs.items()}

        def run(self, bound: dict[str, Any]) -> Any:
            import torch

            with torch.inference_mode():
                output = self.model(**bound)
            return output.logits if self.task == "classification" else output.last_hidden_state

        def to_numpy(self, output: Any) -> np.ndarray:
            return output.detach().float().numpy()


    class ToyBackend:
        name = "toy"

        def recipe(self, config: dict[str, Any]) -> None:
            return None

        def prepare(self, model: Any, config: dict[str, Any], cache: Any) -> None:
            self._threads(config)
            return None

        def load(self, model: Any, config: dict[str, Any], cache: Any) -> ToyPredictor:
            threads = self._threads(config)
            import torch

            from tuner.model import load_torch_model

            torch.set_num_threads(threads)
            return ToyPredictor(load_torch_model(model), model.task)

        def threads_in_use(self, predictor: Any) -> int:
            import torch

            return torch.get_num_threads()

        def _threads(self, config: dict[str, Any]) -> int:
            if config.get("precision") != "fp32":
                raise UnsupportedConfigError(f"toy cannot run precision={config.get('precision')!r}")
            threads = config.get("threads")
            if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
                raise UnsupportedConfigError(f"toy: threads must be an integer >= 1, got {threads!r}")
            return threads
''')


@pytest.fixture
def toy(tmp_path: Path) -> dict[str, str]:
    """The environment of a tuner that knows the toy backend: a search-space folder of
    the shipped files plus toy.toml ($TUNER_SPACE_DIR), its module on PYTHONPATH."""
    spaces, plugins = tmp_path / "spaces", tmp_path / "plugins"
    shutil.copytree(search_spaces_dir(), spaces)
    (spaces / "toy.toml").write_text(TOY_TOML)
    plugins.mkdir()
    (plugins / "toy_backend.py").write_text(TOY_MODULE)
    path = os.pathsep.join(p for p in (str(plugins), os.environ.get("PYTHONPATH", "")) if p)
    return {
        **os.environ,
        "TUNER_SPACE_DIR": str(spaces),
        "PYTHONPATH": path,
        "TUNER_DATA_DIR": str(tmp_path / "data"),
        "TUNER_LOCK_FILE": str(tmp_path / "machine.lock"),
        "HF_HUB_OFFLINE": "1",
    }


def _tuner(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tuner", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_it_appears_in_tuner_space(toy: dict[str, str]) -> None:
    proc = _tuner("space", "--model", "m", "--json", "--backends", "torch,toy", env=toy, timeout=120)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["backends"] == ["torch", "toy"]
    names = [d["name"] for d in data["dimensions"]["toy"]]
    # Its own dimension, then common.toml's knobs: openmp because its file says it uses it.
    assert names[0] == "precision" and {"threads", "binding", "allocator", "openmp"} <= set(names)
    text = _tuner("space", "--model", "m", env=toy, timeout=120)
    assert text.returncode == 0 and "\ntoy\n  precision" in text.stdout, text.stdout


def test_it_runs_a_trial(toy: dict[str, str], tiny_bert_dir: Path) -> None:
    proc = _tuner("measure", "--model", str(tiny_bert_dir), "--seq-len", "16", "--min-time", "0.2",
                  "--set", "backend=toy", "--set", "threads=1", "--json", env=toy)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(proc.stdout)
    assert data["config"]["backend"] == "toy" and data["config"]["openmp"] == "gnu"
    assert data["status"] == "ok" and data["stats"]["median"] > 0
    assert data["effective"]["threads"] == 1 and data["effective"]["openmp"]["runtime"] == "gnu"
    # The same weights as the fp32 reference: as accurate as it can be.
    assert data["accuracy"]["cosine_min"] > 0.9999
