"""tuner.artifacts.cache: build once, reuse, never leave a half-built artifact."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tuner.artifacts.cache import META_FILE, ArtifactCache, library_versions
from tuner.model import ModelRef

REPO = Path(__file__).resolve().parents[2]
MODEL = ModelRef(model_id="m", path="/nowhere", content_hash="a" * 64, task="embedding")


def test_key_is_canonical_and_covers_model_recipe_and_versions(artifact_cache: ArtifactCache) -> None:
    key = artifact_cache.key(MODEL, {"graph": "fused", "opset": 17})
    assert key == artifact_cache.key(MODEL, {"opset": 17, "graph": "fused"})  # key order is irrelevant
    assert key != artifact_cache.key(MODEL, {"graph": "unfused", "opset": 17})
    other = ModelRef(model_id="m", path="/nowhere", content_hash="b" * 64, task="embedding")
    assert key != artifact_cache.key(other, {"graph": "fused", "opset": 17})
    assert set(library_versions()) >= {"torch", "onnx", "onnxruntime", "transformers"}


def test_second_request_reuses_the_artifact(artifact_cache: ArtifactCache) -> None:
    calls: list[Path] = []

    def build(folder: Path) -> None:
        calls.append(folder)
        (folder / "model.onnx").write_bytes(b"graph")

    recipe = {"step": "test", "n": 1}
    first = artifact_cache.get_or_build(MODEL, recipe, build)
    second = artifact_cache.get_or_build(MODEL, recipe, build)
    assert first == second == artifact_cache.path(artifact_cache.key(MODEL, recipe))
    assert len(calls) == 1 and calls[0] != first  # built elsewhere, then renamed into place
    assert (first / "model.onnx").read_bytes() == b"graph"
    meta = json.loads((first / META_FILE).read_text())
    assert meta["recipe"] == recipe and meta["versions"] == library_versions()
    assert meta["build_seconds"] >= 0 and meta["model"]["content_hash"] == MODEL.content_hash


def test_failed_build_leaves_nothing_behind(artifact_cache: ArtifactCache) -> None:
    def broken(folder: Path) -> None:
        (folder / "half.onnx").write_bytes(b"half")
        raise RuntimeError("conversion failed")

    recipe = {"step": "test", "n": 2}
    with pytest.raises(RuntimeError, match="conversion failed"):
        artifact_cache.get_or_build(MODEL, recipe, broken)
    assert not artifact_cache.path(artifact_cache.key(MODEL, recipe)).exists()
    assert [p.name for p in artifact_cache.root.iterdir()] == [".locks"]
    # The next attempt builds from scratch.
    folder = artifact_cache.get_or_build(MODEL, recipe, lambda f: (f / "ok").write_text("ok"))
    assert sorted(p.name for p in folder.iterdir()) == [META_FILE, "ok"]


def test_leftovers_of_a_killed_builder_are_cleared(artifact_cache: ArtifactCache) -> None:
    recipe = {"step": "test", "n": 3}
    key = artifact_cache.key(MODEL, recipe)
    stale = artifact_cache.root / f".tmp-{key}-999999"
    stale.mkdir(parents=True)
    (stale / "junk").write_text("from a SIGKILLed build")
    artifact_cache.get_or_build(MODEL, recipe, lambda f: (f / "ok").write_text("ok"))
    assert not stale.exists()


_BUILDER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from tuner.artifacts.cache import ArtifactCache
    from tuner.model import ModelRef

    root, log = Path(sys.argv[1]), Path(sys.argv[2])
    model = ModelRef(model_id="m", path="/nowhere", content_hash="c" * 64, task="embedding")

    def build(folder):
        with open(log, "a") as handle:
            handle.write(f"{os.getpid()}\\n")
        time.sleep(1.5)  # long enough that the other process arrives mid-build
        (folder / "model.onnx").write_text(str(os.getpid()))

    print(ArtifactCache(root).get_or_build(model, {"step": "slow"}, build))
    """
)


def test_two_processes_build_once(tmp_path: Path) -> None:
    root, log = tmp_path / "artifacts", tmp_path / "builds.log"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen([sys.executable, "-c", _BUILDER, str(root), str(log)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    paths = {out.strip() for out, _ in outputs}
    assert len(paths) == 1
    assert len(log.read_text().split()) == 1  # one build, two users
    folder = Path(paths.pop())
    assert (folder / "model.onnx").read_text() == log.read_text().strip()


# --- which library versions key an artifact -------------------------------------------


def test_a_backend_keys_on_the_libraries_its_file_declares(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path)
    ort, ov = cache.for_backend("onnxruntime"), cache.for_backend("openvino")
    assert set(ort.versions()) == {"torch", "onnx", "onnxruntime", "transformers"}  # the build installed here
    assert set(ov.versions()) == {"torch", "onnx", "transformers", "openvino", "nncf"}
    recipe = {"step": "test"}
    assert ort.key(MODEL, recipe) != ov.key(MODEL, recipe) and ort.root == ov.root == cache.root
    # A step they share names its own libraries, so both find one artifact.
    from tuner.backends.onnx_export import EXPORT_LIBRARIES

    assert ort.keyed_on(EXPORT_LIBRARIES).key(MODEL, recipe) == ov.keyed_on(EXPORT_LIBRARIES).key(MODEL, recipe)
    with pytest.raises(ValueError, match="no search-space file declares a backend 'tensorflow'"):
        cache.for_backend("tensorflow")
    with pytest.raises(ValueError, match=r"no backend declares the libraries \['tensorflow'\]"):
        cache.keyed_on(["tensorflow"])


def test_a_build_is_recorded_under_the_distribution_installed() -> None:
    """onnxruntime-gpu or onnxruntime-openvino in their environments is keyed as what
    it is, not as an absent onnxruntime."""
    import numpy

    from tuner.hardware.versions import Library

    assert library_versions([Library("alt", ("tuner-no-such-dist", "numpy"))]) == {"numpy": numpy.__version__}
    assert library_versions([Library("gone", ("tuner-no-such-dist", "tuner-nor-this"))]) == {
        "tuner-no-such-dist": "absent"}


def test_keys_of_the_onnx_backends_did_not_move(tmp_path: Path) -> None:
    """ONNX Runtime's artifacts are keyed on the same versions as before the libraries
    were declared per backend: a cache built then is still found."""
    from importlib import metadata

    old = {name: metadata.version(name) for name in ("torch", "onnx", "onnxruntime", "transformers")}
    assert ArtifactCache(tmp_path).for_backend("onnxruntime").versions() == old
