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
"""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path
from typing import Any

from tuner.deploy.lookup import BestConfig
from tuner.errors import UserError

EXPORT_FORMAT = 1
CONFIG_FILE = "config.json"
RUN_SCRIPT = "run.sh"
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
                    "merges.txt", "sentencepiece.bpe.model", "spiece.model", "added_tokens.json")


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

    out = Path(out)
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
    key = backend.prepare(model, config, cache)
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("model", "tokenizer"):
        shutil.rmtree(out / stale, ignore_errors=True)
    if key is None:
        files = _copy_files(Path(model.path), out / "model")
        artifact: dict[str, Any] = {"kind": "model folder", "files": files}
    else:
        files = _copy_files(cache.path(key), out / "model")
        artifact = {"kind": "converted", "key": key, "recipe": backend.recipe(config),
                    "last_step": cache.meta(key).get("recipe"), "files": files}
        _copy_files(Path(model.path), out / "tokenizer", _TOKENIZER_FILES)
    data = {
        "format": EXPORT_FORMAT,
        "model": {"id": model.model_id, "content_hash": model.content_hash, "task": model.task, "source": model.path},
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
    (out / CONFIG_FILE).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    script = out / RUN_SCRIPT
    script.write_text(run_script(best))
    script.chmod(0o755)
    return data
