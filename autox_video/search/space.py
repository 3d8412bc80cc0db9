"""The search space: the `auto` spaces, Optuna distributions, samplers and pruners (section.py checks `search:`).

Torch-free (the operator builds the same study). Optuna is imported only by the functions that need
it, so that loading a config.yaml with a `search:` section stays cheap.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autox_video import families
from autox_video.config import Config
from autox_video.search.section import check_domain, choice_label, grid_values
from autox_video.spec.search import Domain, SearchConfig

if typing.TYPE_CHECKING:
    import optuna

# `search: auto`. GPU: the Swin sizes (each with its Kinetics checkpoint when ./checkpoints has one
# per size) and the optimisation keys, bounds around mmaction2's Swin recipes; every default of
# Config lies inside, so trial 0 is the default recipe. CPU: the tiny backbones, trained from scratch
# (they share one AdamW-style recipe, families._TINY_OPT, so the ranges below suit each of them).
AUTO_GPU: dict[str, Any] = {
    "backbone": ["swin_t", "swin_s", "swin_b"],
    "lr": {"low": 1e-4, "high": 1e-2, "log": True},
    "backbone_lr_mult": {"low": 0.03, "high": 1.0, "log": True},
    "weight_decay": {"low": 0.005, "high": 0.2, "log": True},
    "drop_path_rate": {"low": 0.0, "high": 0.4},
    "warmup_epochs": {"low": 0.0, "high": 5.0},
}
AUTO_CPU: dict[str, Any] = {
    # The tiny variant of every family (families.py): on a CPU the cheapest model that learns the data wins.
    "backbone": [n for n in families.NAMES if families.MODELS[n].tiny],
    "lr": {"low": 3e-4, "high": 1e-2, "log": True},
    "weight_decay": {"low": 0.005, "high": 0.2, "log": True},
    "drop_path_rate": {"low": 0.0, "high": 0.2},
    "warmup_epochs": {"low": 0.0, "high": 2.0},
}
# mmaction2's checkpoint names (swin_tiny_patch244_window877_kinetics400_1k.pth, ...).
_CHECKPOINT_WORDS = {"swin_t": "tiny", "swin_s": "small", "swin_b": "base"}


# --- resolving and encoding ------------------------------------------------------------------


def _checkpoint_per_size(search_dir: Path = Path("checkpoints")) -> dict[str, str]:
    found: dict[str, str] = {}
    for size, word in _CHECKPOINT_WORDS.items():
        hits = sorted(search_dir.glob(f"*swin*{word}*.pth")) if search_dir.is_dir() else []
        if hits:
            found[size] = str(hits[0])
    return found


def auto_space(cfg: Config, *, cuda: bool) -> tuple[dict[str, Domain], list[str]]:
    """The documented default space for this device and config, and notes on what was left out and why."""
    raw = dict(AUTO_GPU if cuda else AUTO_CPU)
    notes: list[str] = []
    if cuda and cfg.pretrained != "none":
        # One checkpoint fits one size: search the sizes with a checkpoint each, else keep the backbone.
        per_size = _checkpoint_per_size() if cfg.pretrained == "auto" else {}
        if len(per_size) >= 2:
            raw["backbone"] = [{"backbone": b, "pretrained": p} for b, p in per_size.items()]
        else:
            del raw["backbone"]
            notes.append(f"backbone kept at {cfg.backbone}: the pretrained weights fit that size only")
    space = {k: Domain.model_validate(v) for k, v in raw.items()}
    for name, dom in space.items():
        check_domain(Config, name, dom)
    return space, notes


def resolve_space(search: SearchConfig, cfg: Config, *, cuda: bool) -> tuple[dict[str, Domain], list[str]]:
    """The space to search: the configured one, or the auto space (with notes) when it is omitted."""
    if search.space is not None:
        return search.space, []
    return auto_space(cfg, cuda=cuda)


def distributions(space: Mapping[str, Domain]) -> dict[str, optuna.distributions.BaseDistribution]:
    """Optuna distributions of the space (categorical mappings as their labels)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out: dict[str, optuna.distributions.BaseDistribution] = {}
    for name, dom in space.items():
        assert dom.low is not None or dom.choices is not None
        if dom.choices is not None:
            out[name] = CategoricalDistribution([choice_label(c) for c in dom.choices])
        elif dom.type == "int":
            step = 1 if dom.log else int(dom.step or 1)
            out[name] = IntDistribution(int(dom.low), int(dom.high or 0), log=dom.log, step=step)  # type: ignore[arg-type]
        else:
            out[name] = FloatDistribution(dom.low, dom.high or 0.0, log=dom.log, step=dom.step)  # type: ignore[arg-type]
    return out


def overrides(space: Mapping[str, Domain], params: Mapping[str, Any]) -> dict[str, Any]:
    """Config keys and values of one trial's Optuna params (mapping choices expanded)."""
    out: dict[str, Any] = {}
    for name, value in params.items():
        dom = space[name]
        if dom.choices is not None:
            choice = next(c for c in dom.choices if choice_label(c) == value)
            out.update(choice if isinstance(choice, Mapping) else {name: choice})
        else:
            out[name] = value
    return out


def params_of(space: Mapping[str, Domain], cfg: Config) -> dict[str, Any] | None:
    """The Optuna params that reproduce `cfg` itself, or None when its values lie outside the space."""
    params: dict[str, Any] = {}
    for name, dom in space.items():
        if dom.choices is not None:
            hit = [
                c
                for c in dom.choices
                if (
                    all(getattr(cfg, k) == v for k, v in c.items())
                    if isinstance(c, Mapping)
                    else getattr(cfg, name) == c
                )
            ]
            if not hit:
                return None
            params[name] = choice_label(hit[0])
            continue
        value = getattr(cfg, name)
        assert dom.low is not None and dom.high is not None
        if value is None or not dom.low <= value <= dom.high:
            return None
        if dom.step is not None and abs((value - dom.low) / dom.step - round((value - dom.low) / dom.step)) > 1e-9:
            return None
        params[name] = int(value) if dom.type == "int" else float(value)
    return params


def describe(space: Mapping[str, Domain]) -> list[str]:
    """One line per searched key, as printed at the start of a search."""
    lines = []
    for name, dom in space.items():
        if dom.choices is not None:
            lines.append(f"  {name}: one of {', '.join(str(choice_label(c)) for c in dom.choices)}")
        else:
            scale = "log" if dom.log else "linear"
            step = f", step {dom.step:g}" if dom.step is not None else ""
            lines.append(f"  {name}: {dom.type} {dom.low:g} .. {dom.high:g} ({scale}{step})")
    return lines


@dataclass(frozen=True)
class Rungs:
    """ASHA's rungs for a trial length: first rung and reduction factor, in epochs."""

    min_epochs: int
    reduction_factor: int

    def epochs(self, total: int) -> list[int]:
        """The epochs (below `total`) at which trials are compared."""
        out, r = [], self.min_epochs
        while r < total:
            out.append(r)
            r *= self.reduction_factor
        return out


def rungs(search: SearchConfig, cfg: Config) -> Rungs:
    """ASHA's rungs scaled to `epoch`: first at epoch/9 (at least one validation interval)."""
    interval = max(1, cfg.evaluation)
    first = search.min_epochs or max(interval, math.ceil(cfg.epoch / search.reduction_factor**2))
    return Rungs(first, search.reduction_factor)


def sampler(search: SearchConfig, space: Mapping[str, Domain], seed: int) -> optuna.samplers.BaseSampler:
    """Optuna's sampler for `search.sampler` (TPE: multivariate, multi-objective with two objectives; constant
    liar when trials run in parallel). Every one reads the trials' constraint values (`search.latency`'s limit)."""
    import warnings

    import optuna

    if search.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if search.sampler == "grid":
        return _grid_sampler(grid_values(space), seed)
    if search.sampler == "nsga2":  # multi-objective genetic search; generations of population_size trials
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(50, search.trials // 4)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # Fewer random start-up trials than Optuna's 10 for small searches, so that TPE gets to model.
        return optuna.samplers.TPESampler(
            seed=seed,
            n_startup_trials=max(2, min(10, search.trials // 3)),
            multivariate=True,
            constant_liar=search.parallel > 1,
        )


def pruner(search: SearchConfig, cfg: Config) -> optuna.pruners.BasePruner:
    """Successive halving on validation top-1 with rungs in epochs, or no pruning."""
    import optuna

    if search.pruner == "none":
        return optuna.pruners.NopPruner()
    r = rungs(search, cfg)
    return optuna.pruners.SuccessiveHalvingPruner(min_resource=r.min_epochs, reduction_factor=r.reduction_factor)


def _grid_sampler(grid: dict[str, list[Any]], seed: int) -> optuna.samplers.BaseSampler:
    """Optuna's GridSampler, adapted to an ask/tell loop that also enqueues the default config.

    Two things of GridSampler do not fit: it gives an enqueued trial no grid point (so the default's
    point would run a second time), and it calls `study.stop()` when the grid is done, which raises
    outside `optimize()`. The loop stops by itself once every point was started.
    """
    import optuna

    class Grid(optuna.samplers.GridSampler):
        def before_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            if "grid_id" in trial.system_attrs:
                return
            fixed = trial.system_attrs.get("fixed_params")
            if fixed is not None:
                names = self._param_names
                hits = [
                    i
                    for i, point in enumerate(self._all_grids)
                    if set(fixed) == set(names) and all(point[names.index(k)] == v for k, v in fixed.items())
                ]
                if not hits:
                    return
                grid_id = hits[0]
            else:
                unvisited = sorted(self._get_unvisited_grid_ids(study))
                grid_id = unvisited[0] if unvisited else 0
            study._storage.set_trial_system_attr(trial._trial_id, "search_space", self._search_space)
            study._storage.set_trial_system_attr(trial._trial_id, "grid_id", grid_id)

        def after_trial(self, *args: Any, **kwargs: Any) -> None:
            return None

    return Grid(grid, seed=seed)
