"""tuner._metadata reads installed versions without importing importlib.metadata: its
answers must be importlib.metadata's, for what is installed here and for the odd
layouts a sys.path can hold."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from tuner import _metadata


def _expected(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def test_every_installed_distribution_reads_as_importlib_metadata_reads_it() -> None:
    names = sorted({d.metadata["Name"] for d in metadata.distributions()})
    assert len(names) > 20
    for name in names:
        # Spelled as PyPI does, and as people do (case, dashes, underscores, dots).
        for spelling in {name, name.upper(), name.replace("-", "_"), name.replace("_", "-").replace("-", ".")}:
            assert _metadata.version(spelling) == _expected(spelling), spelling


def test_the_usual_layout_is_read_without_importlib_metadata() -> None:
    """Here the fast reading settles every installed distribution itself."""
    for dist in metadata.distributions():
        _metadata._fast(dist.metadata["Name"])  # raises _Ask where it hands over


def test_a_name_not_installed_has_no_version() -> None:
    assert _metadata.version("tuner-no-such-distribution") is None
    assert _metadata.distribution_version("tuner-no-such-distribution", "pytest") == pytest.__version__
    assert _metadata.distribution_version("tuner-no-such-distribution") is None


def test_the_cli_path_does_not_import_importlib_metadata() -> None:
    code = (
        "import sys\n"
        "from tuner.hardware.versions import library_versions\n"
        "library_versions()\n"
        "print('LOADED', 'importlib.metadata' in sys.modules, 'email' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert "LOADED False False" in done.stdout


def _dist(root: Path, folder: str, text: str | None, file: str = "METADATA") -> None:
    (root / folder).mkdir(parents=True)
    if text is not None:
        (root / folder / file).write_text(text, encoding="utf-8")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """Two folders first on sys.path, with metadata folders importlib.metadata reads its
    own way: both readings are compared on them."""
    first, second = tmp_path / "first", tmp_path / "second"
    _dist(first, "Plain-1.0.dist-info", "Metadata-Version: 2.1\nName: Plain\nVersion: 1.0\n\nBody\nVersion: 9\n")
    _dist(first, "crlf-2.0.dist-info", "Metadata-Version: 2.1\r\nName: crlf\r\nversion:\t2.0 \r\n\r\n")
    _dist(first, "dotted.name-3.dist-info", "Name: dotted.name\nVersion: 3.0+local\n")
    _dist(first, "legacy.egg-info", "Metadata-Version: 1.0\nName: legacy\nVersion: 0.5\n", file="PKG-INFO")
    _dist(first, "empty-1.dist-info", "")  # neither METADATA nor PKG-INFO says anything
    _dist(first, "noversion-1.dist-info", "Name: noversion\n")
    _dist(first, "folded-1.dist-info", "Name: folded\nVersion: 1.0\n  .post1\n")
    _dist(first, "body-1.dist-info", "Name: body\nnot a header\nVersion: 1\n")
    _dist(first, "twice-1.dist-info", "Name: twice\nVersion: 1\nVersion: 2\n")
    _dist(second, "Plain-7.0.dist-info", "Name: Plain\nVersion: 7.0\n")  # the first on sys.path wins
    _dist(second, "later-1.dist-info", "Name: later\nVersion: 1.1\n")
    (first / "file.egg-info").write_text("Name: file\nVersion: 4\n")  # an old egg-info file
    monkeypatch.syspath_prepend(str(second))
    monkeypatch.syspath_prepend(str(first))
    return first, second


NAMES = [
    "Plain", "plain", "PLAIN", "crlf", "dotted.name", "dotted-name", "dotted_name", "legacy", "later",
    "file", "missing", "twice", "folded", "body",
]  # fmt: skip


@pytest.mark.parametrize("name", NAMES)
def test_odd_layouts_read_as_importlib_metadata_reads_them(site: tuple[Path, Path], name: str) -> None:
    assert _metadata.version(name) == _expected(name)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # importlib's word on a missing Version
@pytest.mark.parametrize("name", ["empty", "noversion"])
def test_metadata_without_a_version_reads_as_importlib_metadata_reads_it(site: tuple[Path, Path], name: str) -> None:
    try:
        expected: object = _expected(name)
    except Exception as exc:  # what importlib raises, the fast path must raise too
        with pytest.raises(type(exc)):
            _metadata.version(name)
        return
    assert _metadata.version(name) == expected


def test_an_empty_name_is_refused_as_importlib_metadata_refuses_it() -> None:
    with pytest.raises(ValueError):
        metadata.version("")
    with pytest.raises(ValueError):
        _metadata.version("")
