"""The search-space files as declarations, read once per content.

Everything the tuner derives from the files reads them through here: the space
(``load_space``), the backend registry (``tuner.backends``), the libraries that key
artifacts (``tuner.artifacts``) and the environments (``tuner.envs``). A file is
parsed and checked once per process while its bytes stay the same, so a study that
asks for each trial's environment, or a worker that asks for its backend, reads the
folder but parses nothing again.
"""

from __future__ import annotations

import functools
from pathlib import Path

from tuner import paths
from tuner.errors import SpaceFileError
from tuner.hardware.versions import Library
from tuner.space.schema import COMMON, BackendDecl, SpaceFile, read_space_file

__all__ = ["backend_file", "backend_order", "declared_backends", "declared_libraries", "read_files"]


def _folder(directory: Path | None) -> Path:
    return Path(directory) if directory is not None else paths.search_spaces_dir()


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpaceFileError(f"{path}: cannot read: {exc}") from None


@functools.lru_cache(maxsize=256)
def _parse(path: Path, text: str, names: frozenset[str]) -> SpaceFile:
    # Keyed on the content, not on a modification time: a file rewritten within the
    # filesystem's timestamp granularity (as tests do) is still read anew.
    return read_space_file(path, names, text)


def _backend_paths(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.toml") if p.stem != COMMON)


def read_files(directory: Path | None = None) -> tuple[SpaceFile, dict[str, SpaceFile]]:
    """common.toml and the backend files of ``directory`` (default: the project's
    search_spaces/, or ``$TUNER_SPACE_DIR``), checked, each alone and together."""
    folder = _folder(directory)
    common_path = folder / f"{COMMON}.toml"
    if not folder.is_dir():
        raise SpaceFileError(f"{folder}: search-space folder not found")
    if not common_path.is_file():
        raise SpaceFileError(f"{common_path}: missing (every search-space folder needs common.toml)")
    backend_paths = _backend_paths(folder)
    names = frozenset(p.stem for p in backend_paths)
    common = _parse(common_path, _text(common_path), names)
    common_names = {d.name for d in common.dimensions}
    backends: dict[str, SpaceFile] = {}
    for path in backend_paths:
        backend = _parse(path, _text(path), names)
        clash = sorted(common_names & {d.name for d in backend.dimensions})
        if clash:
            raise SpaceFileError(f"{path}: dimension {clash[0]!r} is already declared in {common_path.name}")
        backends[backend.name] = backend
    _check_envs(backends)
    _check_libraries(backends)
    return common, backends


def backend_file(name: str, directory: Path | None = None) -> SpaceFile | None:
    """``name``'s file alone, checked on its own (None: the folder has none): what a
    trial worker needs, without reading every file. What only the files together can
    get wrong is found when the space is loaded."""
    folder = _folder(directory)
    path = folder / f"{name}.toml"
    if name == COMMON or not path.is_file():
        return None
    names = frozenset(p.stem for p in _backend_paths(folder))
    return _parse(path, _text(path), names)


def backend_order(common: SpaceFile, files: dict[str, SpaceFile]) -> list[str]:
    """The stock default first, then the backends of this interpreter, then those that
    run in their own environment, each group by name."""
    return sorted(files, key=lambda name: (name != common.default_backend, files[name].env is not None, name))


def declared_backends(directory: Path | None = None) -> dict[str, BackendDecl]:
    """Backend name -> its ``[backend]`` table, in ``backend_order``; a file without
    one declares a search space only and is not listed."""
    common, files = read_files(directory)
    return {name: decl for name in backend_order(common, files) if (decl := files[name].backend) is not None}


def declared_libraries(directory: Path | None = None) -> tuple[Library, ...]:
    """Every library a backend declares, once each, in the backends' order."""
    found: dict[str, Library] = {}
    for decl in declared_backends(directory).values():
        for library in decl.libraries:
            found.setdefault(library.name, library)
    return tuple(found.values())


def _check_envs(backends: dict[str, SpaceFile]) -> None:
    """Backends may share an environment, but then they must declare the same one."""
    seen: dict[str, SpaceFile] = {}
    for backend in backends.values():
        if backend.env is None:
            continue
        first = seen.setdefault(backend.env.name, backend)
        if first.env != backend.env:
            raise SpaceFileError(f"{backend.path}: env {backend.env.name!r} is declared differently in {first.path}")


def _check_libraries(backends: dict[str, SpaceFile]) -> None:
    """A library has one set of builds: the fingerprint has one entry for it."""
    seen: dict[str, tuple[Library, SpaceFile]] = {}
    for backend in backends.values():
        for library in backend.backend.libraries if backend.backend else ():
            first, where = seen.setdefault(library.name, (library, backend))
            if first != library:
                raise SpaceFileError(
                    f"{backend.path}: library {library.name!r} is declared as {list(library.distributions)}, "
                    f"and as {list(first.distributions)} in {where.path}"
                )
