"""Finding preload libraries where Debian, conda and virtual environments put them."""

import shutil
import sys
from pathlib import Path

from tuner.hardware import libraries


def test_the_project_setup_installs_all_three():
    # scripts/install-system-packages.sh (jemalloc, tcmalloc) and pyproject's intel-openmp.
    for name in ("jemalloc", "tcmalloc", "iomp5"):
        path = libraries.find(name)
        assert path is not None and path.is_file(), libraries.why_missing(name)
        assert libraries.why_missing(name) is None
    assert libraries.find("iomp5").parent == Path(sys.prefix) / "lib"  # where PyPI's intel-openmp lands


def test_debian_multiarch_folder_is_searched():
    import sysconfig

    multiarch = sysconfig.get_config_var("MULTIARCH")
    if multiarch:
        assert Path(f"/usr/lib/{multiarch}") in libraries.search_dirs()


def test_conda_prefix_comes_first(tmp_path, monkeypatch):
    lib = tmp_path / "lib"
    lib.mkdir()
    shutil.copy(libraries.find("jemalloc"), lib / "libjemalloc.so.2")
    monkeypatch.setenv("CONDA_PREFIX", str(tmp_path))
    assert libraries.search_dirs()[0] == lib
    assert libraries.find("jemalloc") == lib / "libjemalloc.so.2"


def test_override_names_one_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNER_TCMALLOC_LIBRARY", str(tmp_path / "missing.so"))
    assert libraries.find("tcmalloc") is None
    reason = libraries.why_missing("tcmalloc")
    assert "$TUNER_TCMALLOC_LIBRARY names" in reason and "missing.so" in reason
    try:
        libraries.require("tcmalloc")
    except libraries.MissingLibraryError as exc:
        assert str(exc) == reason
    else:
        raise AssertionError("require() must raise for a missing library")


def test_missing_everywhere_says_where_it_looked_and_how_to_install(monkeypatch):
    monkeypatch.setattr(libraries, "search_dirs", lambda: [Path("/nonexistent-a"), Path("/nonexistent-b")])
    reason = libraries.why_missing("iomp5")
    assert reason == ("libiomp5.so not found (looked in /nonexistent-a, /nonexistent-b); "
                      "`pip install intel-openmp` (it lands in <venv>/lib) or `conda install intel-openmp`")
