"""tuner.envs: declarations come from the search-space files; an environment is
pruned with the command to build it until it is ready; a real (small) environment is
built with pip, runs the worker with its own interpreter, and is removed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tuner import envs
from tuner.cli.main import main as cli
from tuner.errors import SpaceFileError, UserError
from tuner.space.loader import read_files

REPO = Path(__file__).resolve().parents[2]

COMMON = '''format = 1
default_backend = "torch"
[dimensions.threads]
help = "t"
type = "int"
low = 1
high = 1
default = 1
'''
TORCH = 'format = 1\n[dimensions.precision]\nhelp = "p"\nchoices = ["fp32"]\ndefault = "fp32"\n'
SMALL = '''format = 1
note = "a note for tuner space"
[env]
name = "small"
help = "numpy only"
packages = ["numpy"]
imports = ["numpy"]
[dimensions.precision]
help = "p"
choices = ["fp32"]
default = "fp32"
'''


@pytest.fixture
def spaces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A search-space folder with a backend "small" that runs in env "small", made
    the project's folder for this test; environments go to a throwaway folder."""
    folder = tmp_path / "spaces"
    folder.mkdir()
    (folder / "common.toml").write_text(COMMON)
    (folder / "torch.toml").write_text(TORCH)
    (folder / "small.toml").write_text(SMALL)
    monkeypatch.setattr("tuner.paths.search_spaces_dir", lambda: folder)
    monkeypatch.setenv("TUNER_ENVS_DIR", str(tmp_path / "envs"))
    return folder


def test_declared_in_the_backend_file(spaces: Path) -> None:
    declared = envs.declared_envs()
    assert list(declared) == ["small"]
    decl, backends = declared["small"]
    assert (decl.packages, decl.imports, backends) == (("numpy",), ("numpy",), ["small"])
    assert envs.env_for_backend("small") == decl and envs.env_for_backend("torch") is None


def test_project_files_declare_ipex_and_onnxruntime_gpu() -> None:
    declared = envs.declared_envs(REPO / "search_spaces")
    assert declared["ipex"][1] == ["ipex"] and declared["onnxruntime-gpu"][1] == ["onnxruntime_cuda"]
    assert any(p.startswith("intel-extension-for-pytorch==2.8") for p in declared["ipex"][0].packages)
    assert any(p.startswith("torch==2.8") for p in declared["ipex"][0].packages)


def test_absent_env_prunes_its_backend_with_the_command(spaces: Path) -> None:
    from tuner.hardware import detect
    from tuner.space import load_space

    decl = envs.env_for_backend("small")
    assert decl is not None
    state = envs.env_state(decl)
    assert state.status == "absent"
    space = load_space(detect())
    assert "small" not in space.backends
    [pruned] = [p for p in space.pruned if p.choice == "small"]
    assert pruned.reason == "its environment 'small' does not exist: run `tuner env create small`"
    with pytest.raises(UserError, match="run `tuner env create small`"):
        envs.worker_python({"backend": "small"})
    assert envs.worker_python({"backend": "torch"}) is None


def test_incomplete_and_stale(spaces: Path, tmp_path: Path) -> None:
    decl = envs.env_for_backend("small")
    assert decl is not None
    folder = envs.env_dir("small")
    folder.mkdir(parents=True)  # a build that died before its manifest
    assert envs.env_state(decl).status == "incomplete"
    (folder / envs.MANIFEST_FILE).write_text(json.dumps({"packages": ["numpy==1.0"]}))
    state = envs.env_state(decl)
    assert state.status == "stale" and "built for other packages (numpy==1.0)" in state.why


def test_conflicting_declarations_are_a_file_error(spaces: Path) -> None:
    (spaces / "other.toml").write_text(SMALL.replace('packages = ["numpy"]', 'packages = ["numpy<2"]'))
    with pytest.raises(SpaceFileError, match="env 'small' is declared differently"):
        read_files(spaces)


def test_bad_env_tables(spaces: Path) -> None:
    (spaces / "small.toml").write_text(SMALL.replace('packages = ["numpy"]', "packages = []"))
    with pytest.raises(SpaceFileError, match="env.packages lists no packages"):
        read_files(spaces)
    (spaces / "small.toml").write_text(SMALL.replace('name = "small"', 'name = "Small Env"'))
    with pytest.raises(SpaceFileError, match="env.name 'Small Env' must be"):
        read_files(spaces)


def test_unknown_env_is_one_clear_line(spaces: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["env", "create", "nope"]) == 2
    assert "no backend declares an environment named 'nope' (declared: small)" in capsys.readouterr().err


@pytest.mark.slow
def test_create_use_and_remove_a_real_env(spaces: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """pip really installs numpy + psutil into a new venv (a small download)."""
    from tuner.hardware import detect
    from tuner.model import DEFAULT_EVAL_TEXTS
    from tuner.space import load_space
    from tuner.trial import spec as S
    from tuner.trial.runner import TrialRunner

    assert cli(["env", "create", "small", "--quiet"]) == 0
    assert "environment 'small' is ready" in capsys.readouterr().out
    decl = envs.env_for_backend("small")
    assert decl is not None
    state = envs.env_state(decl)
    assert state.status == "ready"
    assert set(state.manifest["installed"]) == {"numpy", "psutil"}
    assert state.manifest["tuner_link"] == str(REPO)  # a checkout is linked, not copied
    python = envs.worker_python({"backend": "small"})
    assert python == str(state.python) and python != sys.executable
    # Its interpreter imports this very tuner, and not the tuner venv's torch.
    out = subprocess.run([python, "-c", "import tuner, importlib.util as u; print(tuner.__file__, u.find_spec('torch'))"],
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == [str(REPO / "tuner" / "__init__.py"), "None"]

    space = load_space(detect())
    assert "small" in space.backends and space.notes == {"small": "a note for tuner space"}

    # A trial of the backend runs with the environment's interpreter: the worker
    # starts there and reports that this backend's module is not in the registry.
    runner = TrialRunner(S.ModelRef("m", str(REPO), "0" * 64, "embedding"), detect(), DEFAULT_EVAL_TEXTS[:1])
    result, _ = runner.run(S.Workload(seq_len=8), {"backend": "small", "precision": "fp32", "threads": 1}, None)
    assert result.status == "error" and "unknown backend 'small'" in (result.reason or ""), result

    assert cli(["env", "list", "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["status"] == "ready" and row["backends"] == ["small"] and row["size_bytes"] > 1_000_000
    assert cli(["env", "create", "small"]) == 0  # ready: left alone
    assert cli(["env", "remove", "small"]) == 0
    assert not envs.env_dir("small").exists()
    assert envs.env_state(decl).status == "absent"
    assert cli(["env", "remove", "small"]) == 0
    assert "no environment 'small' to remove" in capsys.readouterr().out



def test_list_says_what_to_run(spaces: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["env", "list"]) == 0
    out = capsys.readouterr().out
    assert "small: absent  (backends: small; -)" in out
    assert "packages: numpy" in out and "run `tuner env create small`" in out
    assert cli(["env", "remove", "../x"]) == 2
    assert "'../x' is not an environment name" in capsys.readouterr().err


def test_a_trial_without_its_env_is_unsupported_with_the_command(spaces: Path) -> None:
    from tuner.hardware import detect
    from tuner.trial import spec as S
    from tuner.trial.runner import TrialRunner

    runner = TrialRunner(S.ModelRef("m", str(REPO), "0" * 64, "embedding"), detect(), ["text"])
    result, _ = runner.run(S.Workload(seq_len=8), {"backend": "small", "precision": "fp32", "threads": 1}, None)
    assert result.status == S.UNSUPPORTED
    assert result.reason == "backend small: its environment 'small' does not exist: run `tuner env create small`"


def test_a_build_in_progress_is_not_called_dead(spaces: Path) -> None:
    import fcntl

    decl = envs.env_for_backend("small")
    assert decl is not None
    envs.env_dir("small").mkdir(parents=True)
    lock = envs.envs_root() / ".locks" / "small.lock"
    lock.parent.mkdir(parents=True)
    with open(lock, "a+") as handle:  # what a running `tuner env create small` holds
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        assert envs.env_state(decl).status == "building"
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    assert envs.env_state(decl).status == "incomplete"
