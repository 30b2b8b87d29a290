"""A full disk is said as one (issue 16, item 4): `tuner export` to a small file
system leaves the target as it was, a study whose artifact cache fills up ends with
exit 2 and the line that names the folder and the space needed (not "no
configuration passed"), a database that cannot grow is one line too."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fault_helpers import FAST, MODEL, copy_study, db_path, mount_tmpfs, one_line_error, run, trials, unmount

pytestmark = pytest.mark.slow


@pytest.fixture
def small(tmp_path: Path):
    """A 20 MB file system of its own (tmpfs), unmounted after the test."""
    folder = tmp_path / "small"
    mount_tmpfs(folder, "20m")
    yield folder
    unmount(folder)


def test_export_to_a_full_disk_leaves_no_half_export(env, stored, small):
    copy_study(stored, env)
    target = small / "export"
    line = one_line_error(run("export", "--model", MODEL, "--seq-len", "16", "--out", str(target), env=env,
                              check=False))
    assert line.startswith(f"tuner: error: no space left on {small}: ") and "MB needed" in line, line
    assert list(small.iterdir()) == [], "the export left files behind"


def test_a_disk_that_fills_up_half_way_leaves_the_target_as_it_was(env, stored, small, monkeypatch):
    """The space check passes (it is told there is plenty) and the copy then hits the
    real end of the disk: an earlier export in the target stays whole."""
    import tuner.deploy.export as export_module
    from tuner.deploy.lookup import best_config
    from tuner.errors import DiskFullError

    copy_study(stored, env)
    for name in ("TUNER_DATA_DIR", "TUNER_CACHE_DIR"):
        monkeypatch.setenv(name, env[name])
    target = small / "export"
    (target / "model").mkdir(parents=True)
    (target / "model" / "model.onnx").write_bytes(b"an earlier export")
    (target / "config.json").write_text("{}")
    (target / "run.sh").write_text("#!/bin/sh\n")
    (target / "notes.txt").write_text("the user's own file")
    before = {p.relative_to(target): p.read_bytes() for p in target.rglob("*") if p.is_file()}
    monkeypatch.setattr(export_module, "free_mb", lambda path: 1e9)
    with pytest.raises(DiskFullError, match=f"no space left on {small}: .* MB needed"):
        export_module.export(best_config(MODEL, 16), target, force=True)
    after = {p.relative_to(target): p.read_bytes() for p in target.rglob("*") if p.is_file()}
    assert after == before
    assert sorted(p.name for p in small.iterdir()) == ["export"], "a temporary folder was left behind"


def test_a_study_whose_cache_fills_up_ends_with_the_full_disk(env, fault_cache, small):
    # The fp32 reference and the tokenized inputs fit (copied from the suite's cache, so
    # no reference run); the ONNX export of MiniLM (about 90 MB) does not.
    for folder in ("references", "inputs"):
        shutil.copytree(fault_cache / folder, small / folder)
    env = {**env, "TUNER_CACHE_DIR": str(small)}
    proc = run("auto", *FAST, "--trials", "2", env=env, check=False)
    line = one_line_error(proc)
    assert line.startswith(f"tuner: error: no space left on {small}/artifacts: ") and "MB needed" in line, line
    assert "no configuration passed" not in proc.stdout
    rows = trials(db_path(env))
    assert [status for _, status, _, _ in rows] == ["interrupted"], rows
    assert "no space left" in (rows[0][3] or "") and "runs first when the study resumes" in rows[0][3]
    assert not list((small / "artifacts").glob(".tmp-*")), "a partial conversion was left in the cache"


def test_a_database_on_a_full_disk_is_one_line(env, small):
    filler = small / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 2**20)
        except OSError:
            pass
    env = {**env, "TUNER_DATA_DIR": str(small / "data")}
    line = one_line_error(run("auto", *FAST, "--trials", "1", env=env, check=False))
    assert "no space left on" in line and "tuner.db" in line, line
