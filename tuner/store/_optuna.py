"""Optuna's own tables, beside ours in the same database: opened with their schema
checked first.

Optuna keeps its schema revision in ``alembic_version`` (ours is
``tuner_alembic_version``). A revision this Optuna does not know was written by a
newer Optuna; a known one that is not its head needs `optuna storage upgrade`. Either
way the study cannot use the tables, and Optuna itself would say so with a
RuntimeError and a traceback deep inside a run: here it is one line (a
``StoreError``, exit 2) before anything is read or written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tuner.errors import StoreError

if TYPE_CHECKING:
    from sqlalchemy.engine import URL


def optuna_storage(url: URL, read_only: bool = False) -> Any:
    """``optuna.storages.RDBStorage`` on ``url``, its schema revision checked; each
    pooled connection is tested before use (a server that went away between two
    trials). ``read_only``: through the store's read-only connection (nothing created)."""
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    from tuner.store._engine import describe, is_environment_error, read_only_connector, sqlite_file, store_error

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    rendered = url.render_as_string(hide_password=False)
    file = sqlite_file(url)
    if read_only and file is not None:
        from sqlalchemy.pool import QueuePool

        engine_kwargs = {"creator": read_only_connector(file), "poolclass": QueuePool, "pool_pre_ping": True}
        rendered = "sqlite://"
    elif read_only:
        engine_kwargs["connect_args"] = {"options": "-c default_transaction_read_only=on"}
    try:
        storage = optuna.storages.RDBStorage(
            rendered, engine_kwargs=engine_kwargs, skip_compatibility_check=True, skip_table_creation=read_only
        )
        current, head, known = storage.get_current_version(), storage.get_head_version(), storage.get_all_versions()
    except SQLAlchemyError as exc:
        if is_environment_error(exc):
            raise store_error(exc, url) from exc
        raise
    except optuna.exceptions.StorageInternalError as exc:
        cause = exc.__cause__
        if isinstance(cause, SQLAlchemyError) and is_environment_error(cause):
            raise store_error(cause, url) from exc
        raise
    if current == head:
        return storage
    where = describe(url)
    if current in known:
        raise StoreError(
            f"the database {where} has Optuna's tables at schema revision {current!r}, older than this Optuna "
            f"{optuna.__version__} uses ({head!r}): upgrade them once with `optuna storage upgrade --storage URL` "
            "(back the database up first), or pass --db with another database"
        )
    raise StoreError(
        f"the database {where} has Optuna's tables at schema revision {current!r}, which Optuna "
        f"{optuna.__version__} does not know (a newer Optuna wrote it; this one's newest is {head!r}): upgrade "
        "optuna (pip install -U optuna) or pass --db with another database"
    )
