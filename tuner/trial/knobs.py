"""The process-level knobs a configuration sets through the environment: the
allocator and the OpenMP runtime, with the variables that act on each.

Each knob returns what to put in the environment and what the probe must then find
in the running process (``expect``), so a knob that did not take makes the trial
invalid instead of silently measuring the stock setting. The values here are the
search space's choices (search_spaces/common.toml); docs/runtime-knobs.md explains them.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from tuner.hardware import libraries

# Every variable a knob may set. Trials and deployments start from the caller's
# environment without these, then add what the configuration asks for, so a stray
# LD_PRELOAD or OMP_PROC_BIND in a shell never leaks into a measurement.
MANAGED_VARIABLES = (
    "LD_PRELOAD",
    "MALLOC_CONF",
    "OMP_NUM_THREADS",
    "OMP_PROC_BIND",
    "OMP_PLACES",
    "OMP_WAIT_POLICY",
    "KMP_AFFINITY",
    "KMP_BLOCKTIME",
    "TBB_ENABLE_SANITIZERS",
)

ALLOCATORS = ("system", "jemalloc", "tcmalloc")

# MALLOC_CONF choices for jemalloc, and the options jemalloc must then report
# (mallctl "opt.*"). jemalloc reports oversize_threshold 0 for any value below its
# smallest large size class: 1 turns the dedicated oversize arena off, which is what
# the value is for (measured with Debian's jemalloc 5.3).
MALLOC_CONFS: dict[str, tuple[str | None, dict[str, Any]]] = {
    "default": (None, {}),
    "tuned": (
        "oversize_threshold:1,background_thread:true,metadata_thp:auto",
        {"background_thread": True, "metadata_thp": "auto", "oversize_threshold": 0},
    ),
    # Never give dirty pages back: no madvise in the hot path, at the cost of RSS.
    "tuned_no_decay": (
        "oversize_threshold:1,background_thread:true,metadata_thp:auto,dirty_decay_ms:-1,muzzy_decay_ms:-1",
        {
            "background_thread": True,
            "metadata_thp": "auto",
            "oversize_threshold": 0,
            "dirty_decay_ms": -1,
            "muzzy_decay_ms": -1,
        },
    ),
}

OPENMP_RUNTIMES = ("gnu", "intel")
KMP_AFFINITIES: dict[str, str | None] = {
    "unset": None,
    "compact": "granularity=fine,compact,1,0",
    "scatter": "granularity=fine,scatter",
}
# omp_proc_bind_t as libgomp's omp_get_proc_bind() returns it.
PROC_BIND_VALUES = {"false": 0, "true": 1, "primary": 2, "close": 3, "spread": 4}


@dataclass
class KnobSettings:
    preload: list[str] = field(default_factory=list)  # absolute library paths, in order
    env: dict[str, str] = field(default_factory=dict)
    expect: dict[str, Any] = field(default_factory=dict)


def _choice(config: dict[str, Any], key: str, allowed: Collection[Any], default: Any) -> Any:
    value = config.get(key, default)
    if value not in allowed or isinstance(value, bool) != isinstance(default, bool):
        raise ValueError(f"{key}={value!r} is not one of {list(allowed)}")
    return value


def allocator_settings(config: dict[str, Any]) -> KnobSettings:
    """LD_PRELOAD (and MALLOC_CONF for jemalloc) for the config's allocator."""
    out = KnobSettings()
    allocator = _choice(config, "allocator", ALLOCATORS, "system")
    out.expect["malloc"] = allocator
    if allocator == "system":
        return out
    out.preload.append(libraries.require(allocator))
    # oneTBB (OpenVINO's thread pool) dlopens libtbbbind with RTLD_DEEPBIND, so hwloc
    # inside it frees with glibc's free what libc allocated with the preloaded malloc:
    # "free(): invalid pointer", SIGABRT (measured here; uxlfoundation/oneTBB#1636).
    # This variable makes oneTBB load it without RTLD_DEEPBIND; nothing else reads it.
    out.env["TBB_ENABLE_SANITIZERS"] = "1"
    if allocator == "jemalloc":
        conf, opts = MALLOC_CONFS[_choice(config, "malloc_conf", MALLOC_CONFS, "default")]
        if conf:
            out.env["MALLOC_CONF"] = conf
        if opts:
            out.expect["jemalloc"] = dict(opts)
    return out


def openmp_settings(config: dict[str, Any], threads: int, cpus: list[int], core_count: int) -> KnobSettings:
    """The OpenMP runtime and its variables; ``cpus`` is the set the process runs on
    (its binding, or all it may use) and ``core_count`` the physical cores among them.

    Only a config with an ``openmp`` key (the torch family: search_spaces/common.toml
    samples it only there) is checked; ONNX Runtime has its own thread pool.
    """
    out = KnobSettings()
    if "openmp" not in config:
        return out
    runtime = _choice(config, "openmp", OPENMP_RUNTIMES, "gnu")
    out.expect["openmp"] = runtime
    several_places = len(cpus) > 1
    if runtime == "intel":
        out.preload.append(libraries.require("iomp5"))
        affinity = KMP_AFFINITIES[_choice(config, "kmp_affinity", KMP_AFFINITIES, "unset")]
        if affinity:
            out.env["KMP_AFFINITY"] = affinity
            if threads > 1 and several_places:
                out.expect["pinned_threads"] = threads
        blocktime = config.get("kmp_blocktime")
        if blocktime is not None:
            if isinstance(blocktime, bool) or not isinstance(blocktime, int) or blocktime < 0:
                raise ValueError(f"kmp_blocktime={blocktime!r} must be a number of milliseconds >= 0")
            out.env["KMP_BLOCKTIME"] = str(blocktime)
            out.expect["kmp_blocktime"] = blocktime
        return out
    bind = _choice(config, "omp_proc_bind", ("unset", "close", "spread"), "unset")
    places = _choice(config, "omp_places", ("unset", "cores", "threads"), "unset")
    wait = _choice(config, "omp_wait_policy", ("unset", "passive", "active"), "unset")
    if bind != "unset":
        out.env["OMP_PROC_BIND"] = bind
    if places != "unset":
        out.env["OMP_PLACES"] = places
        out.expect["omp_num_places"] = core_count if places == "cores" else len(cpus)
    if wait != "unset":
        out.env["OMP_WAIT_POLICY"] = wait
    # libgomp binds threads as soon as OMP_PLACES is set, even without OMP_PROC_BIND
    # (omp_get_proc_bind() then reports "true").
    effective_bind = bind if bind != "unset" else ("true" if places != "unset" else "false")
    out.expect["omp_proc_bind"] = PROC_BIND_VALUES[effective_bind]
    place_count = out.expect.get("omp_num_places", len(cpus))
    if effective_bind != "false" and threads > 1 and several_places and place_count > 1:
        out.expect["pinned_threads"] = threads
    return out
