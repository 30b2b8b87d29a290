"""The conversion cache: each converted model (ONNX export, fused graph, int8 graph)
is built once per (model content, recipe, library versions) and reused by every trial.

Which library versions: those of the libraries its backend declares (``[backend]
libraries`` in its search-space file): a backend keys its artifacts with
``cache.for_backend(name)``. A step several backends share (the ONNX export) names
its own with ``cache.keyed_on(...)`` so that they find one artifact. A library with
several builds (onnxruntime, onnxruntime-gpu, ...) is keyed on the build installed.

Layout under ``root``::

    <key>/            a finished artifact: the builder's files + meta.json
    .tmp-<key>-<pid>/ a build in progress (renamed to <key>/ when it succeeds)
    .locks/<key>.lock the fcntl lock that keeps two processes off the same key

A folder named ``<key>`` is always complete: it appears by an atomic rename.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tuner.errors import DiskFullError, free_mb, is_disk_full
from tuner.hardware.versions import Library
from tuner.model import ModelRef
from tuner.space.catalog import backend_file, declared_libraries
from tuner.vocabulary import ABSENT

__all__ = ["ArtifactCache", "library_versions", "META_FILE"]

META_FILE = "meta.json"


@functools.cache
def _installed(library: Library) -> tuple[str, str]:
    # Read from package metadata, so computing a key imports none of the libraries;
    # cached, as nothing installs into a running process.
    found = library.installed()
    return found if found is not None else (library.distributions[0], ABSENT)


def library_versions(libraries: Iterable[Library] | None = None) -> dict[str, str]:
    """Distribution -> version of each library (the build installed; "absent" under
    its first name when none is). ``libraries`` default: every declared library."""
    chosen = declared_libraries() if libraries is None else libraries
    return dict(sorted(_installed(library) for library in chosen))


class ArtifactCache:
    """``libraries``: whose versions key what this cache builds (default: every
    library a backend declares)."""

    def __init__(self, root: Path, libraries: Iterable[Library] | None = None) -> None:
        self.root = Path(root)
        self.libraries: tuple[Library, ...] | None = tuple(libraries) if libraries is not None else None

    def for_backend(self, name: str) -> "ArtifactCache":
        """This cache keyed on ``name``'s declared libraries (the same folder)."""
        spec = backend_file(name)
        if spec is None or spec.backend is None:
            raise ValueError(f"no search-space file declares a backend {name!r}")
        return ArtifactCache(self.root, spec.backend.libraries)

    def keyed_on(self, names: Iterable[str]) -> "ArtifactCache":
        """This cache keyed on the declared libraries of these names, for a step
        several backends share: its key must not depend on which of them asks."""
        wanted = list(names)
        declared = {library.name: library for library in self.libraries or ()}
        if not set(wanted) <= set(declared):  # the other files only when this backend's do not say
            declared = {library.name: library for library in declared_libraries()}
        unknown = [name for name in wanted if name not in declared]
        if unknown:
            raise ValueError(f"no backend declares the libraries {unknown} (declared: {', '.join(declared)})")
        return ArtifactCache(self.root, [declared[name] for name in wanted])

    def versions(self) -> dict[str, str]:
        """The versions that key what this cache builds."""
        return library_versions(self.libraries)

    def key(self, model: ModelRef, recipe: dict[str, Any]) -> str:
        """sha256 of the model's content hash, the canonical recipe, and library versions."""
        payload = {"model": model.content_hash, "recipe": recipe, "versions": self.versions()}
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def path(self, key: str) -> Path:
        return self.root / key

    def meta(self, key: str) -> dict[str, Any]:
        return json.loads((self.path(key) / META_FILE).read_text())

    def get_or_build(self, model: ModelRef, recipe: dict[str, Any], build: Callable[[Path], object]) -> Path:
        """The artifact folder for (model, recipe), calling ``build(tmp_folder)`` if it is missing.

        ``build`` writes its files into the folder it is given; on success the folder
        is renamed into place, on any exception it is removed and the exception
        propagates. Two processes asking for the same key build it once: the second
        waits on the lock and finds the finished folder.
        """
        key = self.key(model, recipe)
        final = self.path(key)
        if final.is_dir():
            return final
        with self._locked(key):
            if final.is_dir():  # another process built it while we waited
                return final
            self._remove_stale_builds(key)
            tmp = self.root / f".tmp-{key}-{os.getpid()}"
            tmp.mkdir(parents=True)
            started = time.perf_counter()
            try:
                build(tmp)
                meta = {
                    "key": key,
                    "model": {"model_id": model.model_id, "content_hash": model.content_hash},
                    "recipe": recipe,
                    "versions": self.versions(),
                    "build_seconds": round(time.perf_counter() - started, 3),
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                }
                (tmp / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))
                os.rename(tmp, final)
            except BaseException as exc:
                # Read before the partial build is removed: a disk that filled up has no
                # space left now, and a library may have said only "serialization failed".
                needed_mb = _full_disk(exc, self.root, model)
                shutil.rmtree(tmp, ignore_errors=True)
                if needed_mb is not None:
                    raise DiskFullError(
                        self.root,
                        needed_mb,
                        hint="free some space, or set TUNER_CACHE_DIR to a folder on a larger disk",
                    ) from exc
                raise
        return final

    @contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        locks = self.root / ".locks"
        locks.mkdir(parents=True, exist_ok=True)
        # Lock files stay behind: deleting one while another process waits on it
        # would let a third process lock a new inode and build concurrently.
        with open(locks / f"{key}.lock", "a+") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)  # the kernel frees it if we die
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _remove_stale_builds(self, key: str) -> None:
        # Only called under the key's lock, so any temp folder for it belongs to a
        # builder that died (SIGKILL, OOM) before it could clean up.
        for stale in self.root.glob(f".tmp-{key}-*"):
            shutil.rmtree(stale, ignore_errors=True)


def _full_disk(exc: BaseException, root: Path, model: ModelRef) -> float | None:
    """The space (MB) a conversion needs when it failed because the cache's disk is
    full (ENOSPC or EDQUOT, or less space left than the model's weights take, which an
    export needs at least); None when it failed for another reason."""
    if not isinstance(exc, Exception):
        return None
    weights = sum(
        p.stat().st_size
        for p in Path(model.path).glob("*")
        if p.is_file() and p.suffix in (".safetensors", ".bin", ".onnx", ".pt", ".xml")
    )
    needed_mb = max(weights / 2**20, 1.0)
    free = free_mb(root)
    if not is_disk_full(exc) and (free is None or free >= needed_mb):
        return None
    return needed_mb
