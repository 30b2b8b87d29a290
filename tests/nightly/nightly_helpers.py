"""Helpers of the nightly tests: captured machines to move a database between, and the
few store writes the tests make themselves (a winner, verify rounds), through the
store's own API. (pytest puts this folder on sys.path: the tests import it as
``nightly_helpers``; a module named conftest would clash with other folders'.)"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from tuner.hardware import MachineInfo, detect
from tuner.store import Store

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "cpus"
HOST = "box"  # every captured machine, as the one host it stands for in a test


def machine(name: str, hostname: str = HOST, memory_gib: int | None = None, **libraries: str | None) -> MachineInfo:
    """The captured CPU ``name`` as host ``hostname``, with another memory size or some
    library versions, and the fingerprints that follow."""
    from tuner.hardware.fingerprint import combined_fingerprint, hardware_fingerprint, software_fingerprint

    found = dataclasses.replace(detect(str(FIXTURES / name)), hostname=hostname)
    memory = found.memory_bytes if memory_gib is None else memory_gib * 2**30
    versions = {**found.libraries, **libraries}
    hardware = hardware_fingerprint(found.cpu, found.topology, memory, found.gpus)
    software = software_fingerprint(versions)
    return dataclasses.replace(found, memory_bytes=memory, libraries=versions, hardware_fingerprint=hardware,
                               software_fingerprint=software, fingerprint=combined_fingerprint(hardware, software))


def on(env: dict[str, str], cpu: str) -> dict[str, str]:
    """``env`` for a `tuner` that sees itself on the captured machine ``cpu``."""
    return {**env, "TUNER_HW_ROOT": str(FIXTURES / cpu)}


def record_trial(store: Store, study_id: int, number: int, config: dict[str, Any], **fields: Any) -> int:
    """One stored trial, through whichever form of ``Store.record_trial`` this tree has
    (a ``NewTrial``; keyword arguments before it)."""
    import tuner.store

    new_trial = getattr(tuner.store, "NewTrial", None)
    if new_trial is None:
        return store.record_trial(study_id, number, config=config, **fields)  # type: ignore[call-arg]
    return store.record_trial(new_trial(study_id, number, config, **fields))


def record_replay(store: Store, study_id: int, **fields: Any) -> int:
    return store.record_replay(study_id, **fields)


def execute(url: str, *statements: str) -> None:
    """SQL on the test's database beside the store (what another tuner version wrote)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as connection:
            for statement in statements:
                connection.execute(text(statement))
    finally:
        engine.dispose()
