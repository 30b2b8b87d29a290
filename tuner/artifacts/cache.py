"""The conversion cache: each converted model (ONNX export, fused graph, int8 graph)
is built once per (model content, recipe, library versions) and reused by every trial.

Layout under ``root``::

    <key>/            a finished artifact: the builder's files + meta.json
    .tmp-<key>-<pid>/ a build in progress (renamed to <key>/ when it succeeds)
    .locks/<key>.lock the fcntl lock that keeps two processes off the same key

A folder named ``<key>`` is always complete: it appears by an atomic rename.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tuner.model import ModelRef

__all__ = ["ArtifactCache", "library_versions", "META_FILE"]

META_FILE = "meta.json"

# The libraries whose version can change a converted artifact. Versions are read from
# package metadata, so computing a key imports none of them.
VERSIONED_PACKAGES: tuple[str, ...] = ("torch", "onnx", "onnxruntime", "transformers")


def library_versions() -> dict[str, str]:
    versions: dict[str, str] = {}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


class ArtifactCache:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def key(self, model: ModelRef, recipe: dict[str, Any]) -> str:
        """sha256 of the model's content hash, the canonical recipe, and library versions."""
        payload = {"model": model.content_hash, "recipe": recipe, "versions": library_versions()}
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def path(self, key: str) -> Path:
        return self.root / key

    def meta(self, key: str) -> dict[str, Any]:
        return json.loads((self.path(key) / META_FILE).read_text())

    def get_or_build(self, model: ModelRef, recipe: dict[str, Any], build: Callable[[Path], None]) -> Path:
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
                    "versions": library_versions(),
                    "build_seconds": round(time.perf_counter() - started, 3),
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                }
                (tmp / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))
                os.rename(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
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
