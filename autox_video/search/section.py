"""The `search:` section of config.yaml: parsed into a SearchConfig, its space checked against the config keys.

Below autox_video.config, whose validator calls `parse_search`: the Config class comes in as an
argument. Torch- and Optuna-free.
"""

from __future__ import annotations

import difflib
import math
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from autox_video.config_keys import LOCATION_KEYS
from autox_video.errors import ConfigError
from autox_video.spec.search import Domain, SearchConfig

# Keys a search may not vary: where the data and outputs live, and what the search itself controls
# (`epoch` is each trial's length: the budget and ASHA's rungs are counted in it).
NOT_SEARCHABLE: dict[str, str] = {
    **{
        k: "a location, not a hyperparameter"
        for k in LOCATION_KEYS
        if k != "pretrained"  # may be searched: one checkpoint per backbone size
    },
    "epoch": "each trial's length (the budget and ASHA's rungs count epochs); set it outside the space",
    "evaluation": "trials are compared on every validation; set it outside the space",
    "num_class": "fixed by the data",
    "search": "the search itself",
    "s3_endpoint_url": "not a hyperparameter",
    "s3_region": "not a hyperparameter",
    "results_format": "not a hyperparameter",
    "export": "not a hyperparameter",
    "log_interval": "not a hyperparameter",
    "keep_checkpoints": "not a hyperparameter",
}


def choice_label(choice: Any) -> Any:
    """How a choice appears to Optuna: values as they are, a mapping as 'clip_len=16,frame_interval=4'."""
    if isinstance(choice, Mapping):
        return ",".join(f"{k}={v}" for k, v in choice.items())
    return choice


def _check_value(config: type[BaseModel], key: str, value: Any, where: str) -> Any:
    """`value` validated (and coerced: '1e-4' -> 0.0001) as config key `key`; ConfigError if it is not one."""
    probe = config.model_construct()
    try:
        setattr(probe, key, value)  # validate_assignment: the field's type, bounds and validators
    except ValidationError as err:
        raise ConfigError(f"{where}: {value!r} is not a valid {key} ({err.errors()[0]['msg']})") from None
    return getattr(probe, key)


def _unknown(config: type[BaseModel], key: str, where: str) -> ConfigError:
    names = [k for k in config.model_fields if k not in NOT_SEARCHABLE]
    match = difflib.get_close_matches(key, names, n=1, cutoff=0.5)
    hint = f"; did you mean {match[0]!r}?" if match else f"; searchable keys: {', '.join(names)}"
    return ConfigError(f"{where}: unknown config key {key!r}{hint}")


def _searchable(config: type[BaseModel], key: str, where: str) -> None:
    if key in NOT_SEARCHABLE:
        raise ConfigError(f"{where}: {key} cannot be searched ({NOT_SEARCHABLE[key]})")
    if key not in config.model_fields:
        raise _unknown(config, key, where)


def _numeric_kind(config: type[BaseModel], key: str) -> str | None:
    """'int' or 'float' for a numeric config key (Optional included), else None."""
    annotation = config.model_fields[key].annotation
    args = {a for a in (annotation, *typing.get_args(annotation)) if a is not type(None)}
    if args & {float}:
        return "float"
    if args & {int} and bool not in args:
        return "int"
    return None


def check_domain(config: type[BaseModel], name: str, dom: Domain) -> None:
    """Check (and coerce in place) one domain of the space against the config keys it sets."""
    where = f"search.space.{name}"
    if dom.choices is not None:
        if all(isinstance(c, Mapping) for c in dom.choices):
            keys = [tuple(c) for c in dom.choices]
            if any(not k for k in keys) or len(set(map(frozenset, keys))) != 1:
                raise ConfigError(f"{where}: every choice must set the same config keys, got {keys}")
            for sub in keys[0]:
                _searchable(config, str(sub), f"{where}.{sub}")
            dom.choices = [
                {str(k): _check_value(config, str(k), v, f"{where}.{k}") for k, v in c.items()} for c in dom.choices
            ]
        elif any(isinstance(c, Mapping | list) for c in dom.choices):
            raise ConfigError(f"{where}: choices must be all values or all mappings of config keys")
        else:
            _searchable(config, name, where)
            dom.choices = [_check_value(config, name, c, where) for c in dom.choices]
        labels = [choice_label(c) for c in dom.choices]
        if len(set(labels)) != len(labels):
            raise ConfigError(f"{where}: repeated choice in {labels}")
        return
    _searchable(config, name, where)
    kind = _numeric_kind(config, name)
    if kind is None:
        raise ConfigError(f"{where}: {name} is not numeric: give choices instead of low/high")
    if dom.type == "int" and kind == "float":
        kind = "int"  # an int range for a float key (e.g. warmup_epochs) is fine
    elif dom.type == "float" and kind == "int":
        raise ConfigError(f"{where}: {name} takes whole numbers: use type int (or leave type out)")
    dom.type = kind  # type: ignore[assignment]
    assert dom.low is not None and dom.high is not None
    if kind == "int":
        for bound in (dom.low, dom.high, *([dom.step] if dom.step is not None else [])):
            if bound != int(bound):
                raise ConfigError(f"{where}: {name} takes whole numbers, got {bound:g}")
    _check_value(config, name, int(dom.low) if kind == "int" else dom.low, f"{where}.low")
    _check_value(config, name, int(dom.high) if kind == "int" else dom.high, f"{where}.high")


def _first_error(err: ValidationError) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"] if not str(p).startswith("function-"))
    msg = first["msg"].removeprefix("Value error, ")
    value = first.get("input")
    shown = f"={value!r}" if not isinstance(value, dict | list) else ""
    return f"search{'.' + loc if loc else ''}{shown}: {msg}"


def parse_search(value: Any, config: type[BaseModel]) -> SearchConfig | str | None:
    """The `search:` value checked: None, 'auto', or a SearchConfig whose space names valid keys of `config`."""
    if value is None or isinstance(value, SearchConfig):
        search = value
    elif isinstance(value, str):
        if value.strip().lower() != "auto":
            raise ConfigError(f"search={value!r}: expected 'auto' or a mapping (trials, budget, space, ...)")
        return "auto"
    elif isinstance(value, Mapping):
        try:
            search = SearchConfig.model_validate(dict(value))
        except ValidationError as err:
            raise ConfigError(_first_error(err)) from None
    else:
        raise ConfigError(f"search: expected 'auto' or a mapping, got {type(value).__name__}")
    if search is None:
        return None
    if search.space is not None:
        seen: dict[str, str] = {}
        for name, dom in search.space.items():
            check_domain(config, name, dom)
            for key in dom.choices[0] if dom.choices and isinstance(dom.choices[0], Mapping) else [name]:
                if key in seen:
                    raise ConfigError(f"search.space: {key} is set by both {seen[key]} and {name}")
                seen[key] = name
        if search.sampler == "grid":
            grid_values(search.space)  # a continuous range has no grid: say so now
    return search


def grid_values(space: Mapping[str, Domain]) -> dict[str, list[Any]]:
    """Every point of each domain, for GridSampler; ConfigError for a continuous range."""
    out: dict[str, list[Any]] = {}
    for name, dom in space.items():
        if dom.choices is not None:
            out[name] = [choice_label(c) for c in dom.choices]
        elif dom.step is not None or dom.type == "int":
            assert dom.low is not None and dom.high is not None
            step = dom.step or 1
            n = int(math.floor((dom.high - dom.low) / step + 1e-9)) + 1
            points = [dom.low + i * step for i in range(n)]
            out[name] = [int(p) for p in points] if dom.type == "int" else [round(p, 12) for p in points]
        else:
            raise ConfigError(
                f"search.space.{name}: sampler grid needs choices or a step, not a continuous range "
                f"{dom.low:g}..{dom.high:g}"
            )
    return out
