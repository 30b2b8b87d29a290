"""What a trial process really got, read from the kernel and the runtimes rather than
trusted.

Requested and effective settings can differ silently: numactl falling back, a
preload library not found (ld.so prints a line and goes on), an OpenMP runtime that
ignored its variables, a parent already pinned by Intel OpenMP. The worker calls
``remember_start()`` before any framework loads and ``probe()`` after measuring; the
parent compares with the plan's expectations (``differences``) and records a trial
whose settings did not take as invalid, with every difference in words.
"""

from __future__ import annotations

import ctypes
import os
import re
from typing import Any

from tuner.hardware.topology import format_cpulist, parse_cpulist

# Shared libraries whose presence in /proc/self/maps decides how a trial ran.
TRACKED_LIBRARIES = {
    "jemalloc": re.compile(r"libjemalloc"),
    "tcmalloc": re.compile(r"libtcmalloc"),
    "iomp5": re.compile(r"libiomp5"),
    "gomp": re.compile(r"libgomp"),
}
TRACKED_ENV_PREFIXES = ("OMP_", "KMP_", "MALLOC_CONF", "LD_PRELOAD", "GOMP_", "TBB_")
# jemalloc options read back with mallctl("opt.<name>"), and their C types.
_JEMALLOC_OPTIONS: dict[str, Any] = {
    "background_thread": ctypes.c_bool,
    "metadata_thp": ctypes.c_char_p,
    "oversize_threshold": ctypes.c_size_t,
    "dirty_decay_ms": ctypes.c_ssize_t,
    "muzzy_decay_ms": ctypes.c_ssize_t,
}

_start: dict[str, Any] = {}


def remember_start(keep_first: bool = False) -> None:
    """The CPU mask the binding gave, read before any OpenMP runtime can pin this
    thread (Intel OpenMP with KMP_AFFINITY narrows the main thread to one CPU).
    ``keep_first``: do nothing if a mask was already remembered."""
    if keep_first and "cpus" in _start:
        return
    _start["cpus"] = sorted(os.sched_getaffinity(0))


def start_cpus() -> list[int]:
    """The mask remember_start() read (the current one if it was not called)."""
    return list(_start.get("cpus") or sorted(os.sched_getaffinity(0)))


def mapped_libraries(maps_text: str) -> dict[str, str]:
    """Tracked library name -> path of the first mapping found."""
    found: dict[str, str] = {}
    for line in maps_text.splitlines():
        parts = line.split(None, 5)
        if len(parts) < 6:
            continue
        path = parts[5]
        for name, pattern in TRACKED_LIBRARIES.items():
            if name not in found and pattern.search(os.path.basename(path)):
                found[name] = path
    return found


def _status_field(name: str, path: str = "/proc/self/status") -> str | None:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(name + ":"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def mempolicy() -> str | None:
    """The task's memory policy as /proc/self/numa_maps writes it for a mapping
    without its own: ``default``, ``local`` (numactl --localalloc), ``bind:0``
    (--membind=0), ``interleave:0-1``, ``prefer:1``. One line is enough, and cheap:
    the kernel formats numa_maps one mapping at a time."""
    try:
        with open("/proc/self/numa_maps") as f:
            line = f.readline()
    except OSError:
        return None
    parts = line.split()
    return parts[1] if len(parts) > 1 else None


class _DlInfo(ctypes.Structure):
    _fields_ = [
        ("dli_fname", ctypes.c_char_p),
        ("dli_fbase", ctypes.c_void_p),
        ("dli_sname", ctypes.c_char_p),
        ("dli_saddr", ctypes.c_void_p),
    ]


def symbol_library(symbol: str) -> str | None:
    """The file that defines ``symbol`` as the dynamic linker resolves it for every
    library (the global scope, where LD_PRELOAD comes first), or None if unbound."""
    try:
        scope = ctypes.CDLL(None)
        function = getattr(scope, symbol)
        dladdr = scope.dladdr
    except (OSError, AttributeError):
        return None
    info = _DlInfo()
    if not dladdr(ctypes.cast(function, ctypes.c_void_p), ctypes.byref(info)) or not info.dli_fname:
        return None
    return os.path.realpath(info.dli_fname.decode(errors="replace"))


def _kind_of(path: str | None) -> str:
    name = os.path.basename(path or "")
    if "jemalloc" in name:
        return "jemalloc"
    if "tcmalloc" in name:
        return "tcmalloc"
    if name.startswith("libc.so") or name.startswith("libc-"):
        return "system"
    if path and path == os.path.realpath("/proc/self/exe"):
        # An interpreter that links its C library's malloc in statically (the Python
        # of some CUDA images does): nothing was preloaded, so this is the system's.
        return "system"
    return f"other ({path})" if path else "unknown"


def jemalloc_options() -> dict[str, Any]:
    """The options jemalloc parsed (from MALLOC_CONF among others), read back with mallctl."""
    try:
        mallctl = ctypes.CDLL(None).mallctl
    except (OSError, AttributeError):
        return {}
    found: dict[str, Any] = {}
    for name, ctype in _JEMALLOC_OPTIONS.items():
        value = ctype()
        size = ctypes.c_size_t(ctypes.sizeof(value))
        if mallctl(f"opt.{name}".encode(), ctypes.byref(value), ctypes.byref(size), None, ctypes.c_size_t(0)) == 0:
            got = value.value
            found[name] = got.decode() if isinstance(got, bytes) else got
    return found


def openmp_info(libraries: dict[str, str]) -> dict[str, Any]:
    """Which OpenMP runtime answers the framework's calls, and the settings it holds.

    With libiomp5 preloaded, torch's calls to GOMP_* and omp_* resolve to it (it
    carries libgomp's entry points) although torch's own libgomp is still mapped;
    the global-scope lookup says which one wins. The values are the runtime's own
    (initial thread's) ICVs, so a variable the runtime rejected shows as its default.
    """
    provider = symbol_library("GOMP_parallel") or symbol_library("omp_get_max_threads")
    if provider and "libiomp5" in os.path.basename(provider):
        runtime, path = "intel", provider
    elif provider and "libgomp" in os.path.basename(provider):
        runtime, path = "gnu", provider
    elif "gomp" in libraries:  # loaded in a library's local scope only (RTLD_LOCAL)
        runtime, path = "gnu", libraries["gomp"]
    elif "iomp5" in libraries:
        runtime, path = "intel", libraries["iomp5"]
    else:
        return {"runtime": None}
    info: dict[str, Any] = {"runtime": runtime, "library": path}
    try:
        lib = ctypes.CDLL(path)
        info["max_threads"] = int(lib.omp_get_max_threads())
        info["proc_bind"] = int(lib.omp_get_proc_bind())
        info["num_places"] = int(lib.omp_get_num_places())
        if runtime == "intel":
            info["blocktime"] = int(lib.kmp_get_blocktime())
    except (OSError, AttributeError) as exc:
        info["error"] = str(exc)
    return info


def thread_masks(start: list[int]) -> tuple[dict[str, int], int]:
    """Each distinct CPU mask among this process's threads with how many threads
    have it, and how many threads are pinned narrower than ``start`` (what OpenMP
    affinity does to its threads)."""
    masks: dict[str, int] = {}
    pinned = 0
    start_set = set(start)
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return masks, 0
    for tid in tids:
        text = _status_field("Cpus_allowed_list", f"/proc/self/task/{tid}/status")
        if text is None:
            continue  # the thread ended meanwhile
        cpus = parse_cpulist(text)
        key = format_cpulist(cpus)
        masks[key] = masks.get(key, 0) + 1
        if set(cpus) < start_set:
            pinned += 1
    return masks, pinned


def probe() -> dict[str, Any]:
    """Everything the parent checks, read now (after the framework ran)."""
    try:
        with open("/proc/self/maps") as f:
            libraries = mapped_libraries(f.read())
    except OSError:
        libraries = {}
    now = sorted(os.sched_getaffinity(0))
    start = _start.get("cpus", now)
    masks, pinned = thread_masks(start)
    malloc_path = symbol_library("malloc")
    malloc_kind = _kind_of(malloc_path)
    result: dict[str, Any] = {
        "cpus": start,
        "main_thread_cpus": now,
        "mems_allowed": _status_field("Mems_allowed_list"),
        "mempolicy": mempolicy(),
        "libraries": libraries,
        "malloc": {"kind": malloc_kind, "library": malloc_path},
        "openmp": openmp_info(libraries),
        "thread_masks": masks,
        "pinned_threads": pinned,
        "env": {k: v for k, v in os.environ.items() if k.startswith(TRACKED_ENV_PREFIXES)},
    }
    if malloc_kind == "jemalloc":
        result["jemalloc"] = jemalloc_options()
    return result


def _fmt(cpus: Any) -> str:
    return format_cpulist(cpus) if isinstance(cpus, list) and cpus else str(cpus)


def differences(requested: dict[str, Any], effective: dict[str, Any]) -> list[str]:
    """Each way the effective settings differ from the requested ones, in words.

    ``requested`` is a plan's ``expect`` (keys absent there are not checked).
    """
    problems: list[str] = []
    want_cpus = requested.get("cpus")
    if want_cpus is not None and sorted(want_cpus) != effective.get("cpus"):
        problems.append(f"asked for CPUs {_fmt(sorted(want_cpus))}, the process got {_fmt(effective.get('cpus'))}")
    want_threads = requested.get("threads")
    got_threads = effective.get("threads")
    if want_threads is not None and got_threads is not None and want_threads != got_threads:
        problems.append(f"asked for {want_threads} threads, the framework uses {got_threads}")
    if "mempolicy" in requested and requested["mempolicy"] != effective.get("mempolicy"):
        problems.append(
            f"asked for memory policy {requested['mempolicy']}, the process has {effective.get('mempolicy')}"
        )
    if "malloc" in requested:
        malloc = effective.get("malloc") or {}
        if requested["malloc"] != malloc.get("kind"):
            problems.append(
                f"asked for the {requested['malloc']} allocator, malloc comes from "
                f"{malloc.get('library') or 'an unknown library'}"
            )
        else:
            got_opts = effective.get("jemalloc") or {}
            for name, want in (requested.get("jemalloc") or {}).items():
                if got_opts.get(name) != want:
                    problems.append(
                        f"MALLOC_CONF did not take: jemalloc reports opt.{name}={got_opts.get(name)!r}, "
                        f"expected {want!r}"
                    )
    openmp = effective.get("openmp") or {}
    if "openmp" in requested:
        if requested["openmp"] != openmp.get("runtime"):
            where = openmp.get("library") or "no OpenMP runtime is loaded"
            problems.append(f"asked for the {requested['openmp']} OpenMP runtime, OpenMP calls go to {where}")
        else:
            for key, label in (
                ("kmp_blocktime", "blocktime"),
                ("omp_proc_bind", "proc_bind"),
                ("omp_num_places", "num_places"),
            ):
                if key in requested and openmp.get(label) != requested[key]:
                    problems.append(
                        f"{key}: asked for {requested[key]}, the OpenMP runtime reports {openmp.get(label)}"
                    )
    if "pinned_threads" in requested and effective.get("pinned_threads", 0) < requested["pinned_threads"]:
        problems.append(
            f"asked for {requested['pinned_threads']} OpenMP threads pinned to their own CPUs, "
            f"{effective.get('pinned_threads', 0)} are (thread masks {effective.get('thread_masks')})"
        )
    seen = effective.get("env")
    if seen is not None:
        for name, want in (requested.get("env") or {}).items():
            if seen.get(name) != want:
                problems.append(f"{name}: asked for {want!r}, the process saw {seen.get(name)!r}")
    return problems


def summary(effective: dict[str, Any]) -> list[str]:
    """The effective settings in a few lines, for ``tuner measure`` and ``tuner launch``."""
    if not effective:
        return []
    lines = [
        f"cpus {_fmt(effective.get('cpus'))} (main thread now {_fmt(effective.get('main_thread_cpus'))}), "
        f"memory policy {effective.get('mempolicy')}, mems allowed {effective.get('mems_allowed')}"
    ]
    malloc = effective.get("malloc") or {}
    line = f"malloc: {malloc.get('kind')} ({malloc.get('library')})"
    if effective.get("jemalloc"):
        line += " opts " + ",".join(f"{k}:{v}" for k, v in sorted(effective["jemalloc"].items()))
    lines.append(line)
    openmp = effective.get("openmp") or {}
    if openmp.get("runtime"):
        details = ", ".join(
            f"{k} {openmp[k]}" for k in ("max_threads", "proc_bind", "num_places", "blocktime") if k in openmp
        )
        lines.append(f"openmp: {openmp['runtime']} ({openmp.get('library')}) {details}")
    if "threads" in effective:
        lines.append(
            f"framework threads {effective['threads']}, {effective.get('pinned_threads', 0)} threads pinned, "
            f"masks {effective.get('thread_masks')}"
        )
    mapped = effective.get("libraries") or {}
    if mapped:
        lines.append("mapped: " + ", ".join(f"{k}={v}" for k, v in sorted(mapped.items())))
    env = effective.get("env") or {}
    if env:
        lines.append("env: " + " ".join(f"{k}={v}" for k, v in sorted(env.items())))
    return lines
