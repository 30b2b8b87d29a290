"""The loaded, pruned search space: what Optuna samples, what a grid enumerates, and
what a configuration is checked against."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from tuner.errors import UserError
from tuner.space.schema import Scalar, _same_kind, _toml

if TYPE_CHECKING:
    import optuna


@dataclass(frozen=True)
class Pruned:
    """An option that left the space before sampling. ``dimension`` is "backend" when
    a whole backend left (then ``choice`` and ``backend`` are its name); ``backend``
    is None for a knob of common.toml."""

    dimension: str
    choice: object
    backend: str | None
    reason: str


@dataclass(frozen=True)
class Dimension:
    """A dimension resolved against the machine: symbolic bounds are numbers and
    choices the machine cannot run are gone."""

    name: str  # the config key
    param: str  # the Optuna parameter name ("torch.precision"; plain for common knobs)
    help: str
    kind: str  # "categorical" or "int"
    choices: tuple[Scalar, ...]  # categorical: what is left after pruning
    low: int
    high: int
    step: int
    default: Scalar
    when: tuple[tuple[str, tuple[Scalar, ...]], ...]
    owner: str | None  # the backend whose file declares it; None for common.toml

    def active(self, config: dict[str, Any]) -> bool:
        """Whether this dimension applies to ``config`` (whose earlier keys are set)."""
        for ref, values in self.when:
            if ref not in config or not any(_same_kind(config[ref], v) and config[ref] == v for v in values):
                return False
        return True

    def values(self) -> tuple[Scalar, ...]:
        if self.kind == "int":
            return tuple(range(self.low, self.high + 1, self.step))
        return self.choices

    def allows(self, value: Any) -> bool:
        if self.kind == "int":
            return (
                isinstance(value, int)
                and not isinstance(value, bool)
                and self.low <= value <= self.high
                and (value - self.low) % self.step == 0
            )
        return any(_same_kind(value, c) and value == c for c in self.choices)

    def suggest(self, trial: "optuna.Trial") -> Scalar:
        if self.kind == "int":
            return trial.suggest_int(self.param, self.low, self.high, step=self.step)
        value = trial.suggest_categorical(self.param, list(self.choices))
        assert value is not None  # None is never a choice: schema allows only scalars
        return value

    def describe_values(self) -> str:
        if self.kind == "int":
            step = f" step {self.step}" if self.step != 1 else ""
            return f"{self.low}..{self.high}{step}"
        return ", ".join(_toml(c).strip('"') for c in self.choices)

    def describe_when(self) -> str:
        return " and ".join(
            f"{ref} = {' or '.join(_toml(v).strip(chr(34)) for v in values)}" for ref, values in self.when
        )

    def structure(self) -> dict[str, Any]:
        """What decides the points this dimension can take (no help text)."""
        data: dict[str, Any] = {"name": self.name, "param": self.param, "kind": self.kind}
        if self.kind == "int":
            data.update(low=self.low, high=self.high, step=self.step)
        else:
            data["choices"] = list(self.choices)
        data["when"] = [[ref, list(values)] for ref, values in self.when]
        return data

    def to_dict(self) -> dict[str, Any]:
        return {**self.structure(), "default": self.default, "help": self.help}


def _fmt(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (str, int, float, bool)) or value is None else repr(value)


class Space:
    """Per backend, the ordered dimensions a configuration is built from: the
    backend's own (its file's order), then the common knobs."""

    def __init__(
        self,
        dimensions: dict[str, list[Dimension]],
        pruned: list[Pruned],
        default_backend: str,
        notes: dict[str, str] | None = None,
    ) -> None:
        self._dimensions = dimensions
        self.notes: dict[str, str] = dict(notes or {})  # backend -> what to know before trusting it
        self.backends: list[str] = list(dimensions)
        self.pruned: list[Pruned] = list(pruned)
        self.default_backend = default_backend if default_backend in dimensions else self.backends[0]

    def dimensions(self, backend: str) -> list[Dimension]:
        return list(self._dimensions[backend])

    # --- sampling ---------------------------------------------------------------

    def sample(self, trial: "optuna.Trial") -> dict[str, Any]:
        """Define-by-run: the backend first, then each dimension active so far."""
        backend = trial.suggest_categorical("backend", list(self.backends))
        config: dict[str, Any] = {"backend": backend}
        for dim in self._dimensions[backend]:
            if dim.active(config):
                config[dim.name] = dim.suggest(trial)
        return config

    def random_config(self, rng: "random.Random", backends: list[str] | None = None) -> dict[str, Any]:
        """A uniformly drawn point (per dimension) of one of ``backends`` (default: all)."""
        backend = rng.choice(backends or self.backends)
        config: dict[str, Any] = {"backend": backend}
        for dim in self._dimensions[backend]:
            if dim.active(config):
                config[dim.name] = rng.choice(dim.values())
        return config

    def params_for(self, config: dict[str, Any]) -> dict[str, Any]:
        """The Optuna params that make ``sample`` return ``config`` (for
        ``study.enqueue_trial``)."""
        self.validate(config)
        backend = config["backend"]
        params: dict[str, Any] = {"backend": backend}
        for dim in self._dimensions[backend]:
            if dim.name in config:
                params[dim.param] = config[dim.name]
        return params

    def default_config(self) -> dict[str, Any]:
        """The stock default: the default backend with every active dimension at its
        file's default (a pruned default falls back to the first choice left)."""
        backend = self.default_backend
        config: dict[str, Any] = {"backend": backend}
        for dim in self._dimensions[backend]:
            if dim.active(config):
                config[dim.name] = dim.default if dim.allows(dim.default) else dim.values()[0]
        return config

    def restricted(self, free: set[str] | tuple[str, ...]) -> "Space":
        """This space with only the dimensions named in ``free`` left free, every other
        one fixed at its default (a benchmark's reduced but real space)."""
        dims = {}
        for backend, own in self._dimensions.items():
            fixed = []
            for dim in own:
                if dim.name in free:
                    fixed.append(dim)
                    continue
                value = dim.default if dim.allows(dim.default) else dim.values()[0]
                if dim.kind == "int":
                    fixed.append(replace(dim, low=int(value), high=int(value), step=1, default=value))
                else:
                    fixed.append(replace(dim, choices=(value,), default=value))
            dims[backend] = fixed
        return Space(dims, self.pruned, self.default_backend, self.notes)

    # --- checking ---------------------------------------------------------------

    def _pruned_reason(self, backend: str | None, dimension: str, value: Any) -> str | None:
        for p in self.pruned:
            if p.dimension == dimension and p.backend == backend and _same_kind(p.choice, value) and p.choice == value:
                return p.reason
        return None

    def unknown_key_reason(self, key: str, backend: str) -> str:
        """Why ``key`` is not a key of ``backend``: another backend's knob (openmp for
        ONNX Runtime, say), or not a knob at all."""
        others = [b for b in self.backends if any(d.name == key for d in self._dimensions[b])]
        if others:
            return f"{key} does not apply to backend {backend} (only to {', '.join(others)}); remove it"
        names = ", ".join(d.name for d in self._dimensions[backend])
        return f"unknown key {key!r} for backend {backend} (known: backend, {names})"

    def validate(self, config: dict[str, Any]) -> dict[str, Any]:
        """Check ``config`` against the space; raise UserError naming the bad key, the
        value and what is allowed. Fills nothing in; returns a copy."""
        if not isinstance(config, dict):
            raise UserError(f"a configuration is a JSON object of key: value, got {type(config).__name__}")
        allowed_backends = ", ".join(self.backends)
        if "backend" not in config:
            raise UserError(f"configuration has no 'backend' key (allowed: {allowed_backends})")
        backend = config["backend"]
        if backend not in self._dimensions:
            why = self._pruned_reason(backend if isinstance(backend, str) else None, "backend", backend)
            if why:
                raise UserError(f"backend={_fmt(backend)} cannot run here: {why} (allowed: {allowed_backends})")
            raise UserError(f"unknown backend={_fmt(backend)} (allowed: {allowed_backends})")
        dims = self._dimensions[backend]
        known = {d.name for d in dims}
        for key in config:
            if key != "backend" and key not in known:
                raise UserError(self.unknown_key_reason(key, backend))
        partial: dict[str, Any] = {"backend": backend}
        for dim in dims:
            active = dim.active(partial)
            if not active:
                if dim.name in config:
                    raise UserError(
                        f"{dim.name} does not apply to backend {backend} unless {dim.describe_when()}; remove it"
                    )
                continue
            if dim.name not in config:
                raise UserError(
                    f"configuration for backend {backend} is missing {dim.name!r} (allowed: {dim.describe_values()})"
                )
            value = config[dim.name]
            if not dim.allows(value):
                why = self._pruned_reason(dim.owner, dim.name, value)
                because = f" on this machine: {why}" if why else ""
                raise UserError(
                    f"{dim.name}={_fmt(value)} is not allowed for backend {backend}{because} "
                    f"(allowed: {dim.describe_values()})"
                )
            partial[dim.name] = value
        return dict(config)

    # --- enumeration ------------------------------------------------------------

    def configs(self) -> Iterator[dict[str, Any]]:
        """Every distinct point, backend by backend, in dimension order."""
        for backend in self.backends:
            yield from self._expand({"backend": backend}, self._dimensions[backend])

    def _expand(self, config: dict[str, Any], rest: list[Dimension]) -> Iterator[dict[str, Any]]:
        if not rest:
            yield dict(config)
            return
        dim, tail = rest[0], rest[1:]
        if not dim.active(config):
            yield from self._expand(config, tail)
            return
        for value in dim.values():
            config[dim.name] = value
            yield from self._expand(config, tail)
        del config[dim.name]

    def size(self) -> int:
        return sum(1 for _ in self.configs())

    # --- description ------------------------------------------------------------

    def content_hash(self) -> str:
        """Identifies the space a study samples from: backends, dimensions with their
        (pruned) values and conditions, and the default. Help text does not count."""
        payload = {
            "backends": self.backends,
            "dimensions": {b: [d.structure() for d in dims] for b, dims in self._dimensions.items()},
            "default": self.default_config(),
        }
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return {
            "backends": list(self.backends),
            "default_backend": self.default_backend,
            "default": self.default_config(),
            "dimensions": {b: [d.to_dict() for d in dims] for b, dims in self._dimensions.items()},
            "pruned": [asdict(p) for p in self.pruned],
            "notes": dict(self.notes),
            "size": self.size(),
            "content_hash": self.content_hash(),
        }
