"""``tuner export``: the winner as files a deployment can carry.

    DIR/model/      the converted artifact (e.g. the int8 ONNX file) or, for PyTorch
                    eager, the model folder (weights, config, tokenizer)
    DIR/tokenizer/  the tokenizer files, for backends whose artifact has none
    DIR/config.json the configuration, the workload, the measured figures, the launch
                    prefix and environment, library versions, the machine fingerprint
    DIR/run.sh      ``./run.sh CMD ARGS...`` runs CMD under the winning binding,
                    LD_PRELOAD and variables (all instances of a throughput winner)

The launch settings hold this machine's library paths and CPU numbers: the export is
for machines with the same fingerprint (``tuner detect``).

An export is written into a temporary folder beside DIR and moved into place at the
end, so a failure half-way (a full disk, a kill) leaves DIR as it was: never a
truncated model without its config.json or run.sh. The space it needs is checked
first; a disk that fills up anyway is said as one line (``DiskFullError``).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
from pathlib import Path
from typing import Any

from tuner.deploy.lookup import BestConfig
from tuner.errors import DiskFullError, UserError, free_mb, is_disk_full

EXPORT_FORMAT = 1
CONFIG_FILE = "config.json"
RUN_SCRIPT = "run.sh"
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "merges.txt",
    "sentencepiece.bpe.model",
    "spiece.model",
    "added_tokens.json",
)


def _copy_files(source: Path, target: Path, names: tuple[str, ...] | None = None) -> list[str]:
    target.mkdir(parents=True, exist_ok=True)
    copied = []
    for path in sorted(source.iterdir()):
        if path.is_file() and (names is None or path.name in names):
            shutil.copy2(path, target / path.name)
            copied.append(path.name)
    return copied


def run_script(best: BestConfig) -> str:
    slots = best.instances or [(best.prefix, best.env)]
    unset = [word for name in best.unset for word in ("-u", name)]
    lines = [
        "#!/bin/sh",
        f"# Written by `tuner export`: {best.model}, seq {best.seq_len}, batch {best.batch}, {best.objective}.",
        "# Runs the command given as arguments under the winning binding, allocator and",
        "# OpenMP settings; valid on machines with this machine's fingerprint.",
        'if [ $# -eq 0 ]; then echo "usage: $0 CMD ARGS..." >&2; exit 2; fi',
    ]
    for note in best.notes:
        lines.append(f"# note: {note}")
    for prefix, env in slots:
        words = [*prefix, "env", *unset, *(f"{k}={v}" for k, v in env.items())]
        command = " ".join(shlex.quote(w) for w in words) + ' "$@"'
        lines.append(f"exec {command}" if len(slots) == 1 else f"{command} &")
    if len(slots) > 1:
        lines.append("wait")
    return "\n".join(lines) + "\n"


def export(best: BestConfig, out: Path, force: bool = False) -> dict[str, Any]:
    """Write the export of ``best`` into ``out``; returns what config.json holds."""
    from tuner import paths
    from tuner.artifacts.cache import ArtifactCache, library_versions
    from tuner.backends import get_backend
    from tuner.hardware import detect
    from tuner.model import resolve_model
    from tuner.trial.plan import threads_per_instance

    out = Path(out).absolute()
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} exists and is not a folder; choose another --out")
    if out.exists() and any(out.iterdir()) and not force:
        raise UserError(f"{out} exists and is not empty; choose another --out or pass --force")
    model = resolve_model(best.model)
    if model.content_hash != best.model_hash:
        raise UserError(f"{best.model} changed since it was tuned (content hash differs); run `tuner auto` again")
    machine = detect()
    config = dict(best.config)
    config["threads"] = threads_per_instance(config, machine)
    backend = get_backend(config["backend"])
    cache = ArtifactCache(paths.cache_dir() / "artifacts")
    key = backend.prepare(model, config, cache)  # a full cache disk: DiskFullError from the cache
    parts: list[tuple[Path, str, tuple[str, ...] | None]]
    if key is None:
        parts = [(Path(model.path), "model", None)]
    else:
        parts = [(cache.path(key), "model", None), (Path(model.path), "tokenizer", _TOKENIZER_FILES)]
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create {parent} ({exc.strerror}); choose another --out") from None
    needed_mb = sum(_size(source, names) for source, _, names in parts) / 2**20 + 1.0  # + config.json, run.sh
    free = free_mb(parent)
    if free is not None and free < needed_mb:
        raise DiskFullError(parent, needed_mb, hint="free some space or choose another --out")
    _remove_leftovers(out)
    tmp = parent / f".{out.name}.tmp-{os.getpid()}"
    try:
        tmp.mkdir()
        files = [_copy_files(source, tmp / name, names) for source, name, names in parts]
        if key is None:
            artifact: dict[str, Any] = {"kind": "model folder", "files": files[0]}
        else:
            artifact = {
                "kind": "converted",
                "key": key,
                "recipe": backend.recipe(config),
                "last_step": cache.meta(key).get("recipe"),
                "files": files[0],
            }
        data = {
            "format": EXPORT_FORMAT,
            "model": {
                "id": model.model_id,
                "content_hash": model.content_hash,
                "task": model.task,
                "source": model.path,
            },
            "workload": {"seq_len": best.seq_len, "batch": best.batch},
            "objective": best.objective,
            "config": best.config,
            "threads_per_process": config["threads"],
            "metrics": best.metrics,
            "speedup": best.speedup,
            "artifact": artifact,
            "launch": best.to_dict()["launch"],
            "versions": library_versions(),
            "machine": {"fingerprint": machine.fingerprint, "cpu": machine.cpu.model_name},
        }
        (tmp / CONFIG_FILE).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        script = tmp / RUN_SCRIPT
        script.write_text(run_script(best))
        script.chmod(0o755)
        _move_into_place(tmp, out)
    except OSError as exc:
        if is_disk_full(exc):
            raise DiskFullError(parent, needed_mb, hint="free some space or choose another --out") from None
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return data


def _size(source: Path, names: tuple[str, ...] | None) -> int:
    return sum(p.stat().st_size for p in source.iterdir() if p.is_file() and (names is None or p.name in names))


def _remove_leftovers(out: Path) -> None:
    """Temporary folders of an export of ``out`` that was killed half-way."""
    for stale in out.parent.glob(f".{out.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    for stale in out.parent.glob(f".{out.name}.old-*"):
        shutil.rmtree(stale, ignore_errors=True)


def _move_into_place(tmp: Path, out: Path) -> None:
    """``tmp``'s export becomes ``out``: one rename when ``out`` is absent or empty; into
    a folder with other files (--force), the export's entries one by one, the ones they
    replace moved aside first and put back if a rename fails."""
    if not out.exists() or not any(out.iterdir()):
        os.rename(tmp, out)  # rename(2) replaces an empty folder
        return
    aside = out.parent / f".{out.name}.old-{os.getpid()}"
    aside.mkdir()
    moved: list[str] = []
    try:
        for name in sorted({*os.listdir(tmp), "model", "tokenizer", CONFIG_FILE, RUN_SCRIPT}):
            if (out / name).exists() or (out / name).is_symlink():
                os.rename(out / name, aside / name)
                moved.append(name)
            if (tmp / name).exists():
                os.rename(tmp / name, out / name)
    except OSError:
        for name in moved:
            if (out / name).is_dir():
                shutil.rmtree(out / name, ignore_errors=True)
            elif (out / name).exists():
                (out / name).unlink()
            os.rename(aside / name, out / name)
        raise
    finally:
        shutil.rmtree(aside, ignore_errors=True)
