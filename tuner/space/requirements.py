"""What a backend or one choice needs from the machine, and why it cannot run.

Every check is cheap and side-effect free: ISA flags from the detected CPU,
executables via ``shutil.which``, Python modules via import-system lookups that
never import anything (importing onnxruntime or torch to see whether it exists would
cost seconds and could crash on an unsupported CPU).
"""

from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
import shutil
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tuner.hardware.cpu import isa_names_for
from tuner.hardware.libraries import why_missing

if TYPE_CHECKING:
    from tuner.hardware import MachineInfo


@dataclass(frozen=True)
class Requirements:
    isa_any: tuple[str, ...] = ()  # at least one of these ISA features
    # None of these: for a choice that only matters on CPUs without them (a workaround
    # for what the instructions do right, say).
    isa_none: tuple[str, ...] = ()
    executables: tuple[str, ...] = ()  # all on PATH
    modules: tuple[str, ...] = ()  # all importable (dotted names allowed)
    gpu: bool = False  # an NVIDIA GPU NVML can see
    libraries: tuple[str, ...] = ()  # all found (tuner.hardware.libraries: jemalloc, tcmalloc, iomp5)

    def __bool__(self) -> bool:
        return bool(self.isa_any or self.isa_none or self.executables or self.modules or self.gpu or self.libraries)


@functools.cache
def module_available(name: str) -> bool:
    """Whether ``import name`` would find the module, without importing it.

    ``importlib.util.find_spec("a.b")`` imports ``a`` first, so submodules are
    looked up in the parent's search path with the path finder instead.
    """
    parts = name.split(".")
    try:
        spec = importlib.util.find_spec(parts[0])
    except (ImportError, ValueError):
        return False
    for i in range(1, len(parts)):
        if spec is None or not spec.submodule_search_locations:
            return False
        spec = importlib.machinery.PathFinder.find_spec(".".join(parts[: i + 1]), list(spec.submodule_search_locations))
    return spec is not None


@functools.cache
def executable_available(name: str) -> bool:
    return shutil.which(name) is not None


def _either(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def _both(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def unmet(requirements: Requirements, machine: "MachineInfo") -> list[str]:
    """The reasons ``machine`` cannot satisfy ``requirements`` (empty: it can)."""
    reasons: list[str] = []
    if requirements.isa_any and not any(machine.cpu.has(name) for name in requirements.isa_any):
        # Name only the features of this CPU's architecture: "no bf16" would puzzle
        # on x86, where the alternatives that matter are avx512_bf16 and amx_bf16.
        here = [n for n in requirements.isa_any if n in isa_names_for(machine.cpu.arch)]
        if here:
            reasons.append(f"no {_either(here)} on this CPU")
        else:
            reasons.append(f"no {_either(list(requirements.isa_any))} on this {machine.cpu.arch} CPU")
    present = [name for name in requirements.isa_none if machine.cpu.has(name)]
    if present:
        reasons.append(f"not for a CPU with {_both(present)}")
    for name in requirements.executables:
        if not executable_available(name):
            reasons.append(f"executable {name} not found on PATH")
    for name in requirements.modules:
        if not module_available(name):
            reasons.append(f"python module {name} is not installed")
    for name in requirements.libraries:
        missing = why_missing(name)
        if missing:
            reasons.append(missing)
    if requirements.gpu and not machine.gpus:
        reasons.append(machine.gpu_note or "no NVIDIA GPU")
    return reasons
