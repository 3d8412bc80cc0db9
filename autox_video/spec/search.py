"""The `search:` section: trials, budget, sampler, pruner and the space of config keys (torch-free).

One model for config.yaml (`search:`) and, later, the VideoTrainingJob's `spec.search`: fields are
snake_case in config.yaml and camelCase in the custom resource (both accepted). The space's keys are
config keys; which keys exist and what type each holds is checked against the Config model by
`autox_video.search.space`, which also turns the domains into Optuna distributions.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from autox_video.spec.common import CamelModel, sub

Sampler = Literal["tpe", "random", "grid", "nsga2"]
Pruner = Literal["asha", "none"]
Objective = Literal["top1", "latency", "throughput"]


class Domain(CamelModel):
    """One searched key: `choices` (categorical) or `low`..`high` (float or int, linear or log scale).

    Shorthand in config.yaml: a list is its choices (`backbone: [swin_t, swin_b]`). A choice may be a
    mapping of several config keys set together (`clip: [{clip_len: 16, frame_interval: 4}, ...]`);
    the key of such a domain is only its name.
    """

    # CEL rules the API server checks at `kubectl apply` (the model checks the same, and more, in Python).
    model_config = {
        **CamelModel.model_config,
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.choices) || (has(self.low) && has(self.high))",
                    "message": "give choices, or low and high",
                },
                {
                    "rule": "!has(self.choices) || !(has(self.low) || has(self.high))",
                    "message": "give either choices or low/high, not both",
                },
                {
                    "rule": "!has(self.low) || !has(self.high) || self.low < self.high",
                    "message": "low must be below high (inverted or empty range)",
                },
                {"rule": "!self.log || !has(self.low) || self.low > 0.0", "message": "log scale needs low > 0"},
            ]
        },
    }

    choices: list[Any] | None = Field(
        None,
        min_length=1,
        description="Categorical values (config values, or mappings of config keys set together).",
        json_schema_extra={"items": {"x-kubernetes-preserve-unknown-fields": True}},
    )
    low: float | None = Field(None, description="Lower bound of a range (inclusive).")
    high: float | None = Field(None, description="Upper bound of a range (inclusive).")
    log: bool = Field(False, description="Sample the range on a log scale (low must be > 0).")
    step: float | None = Field(None, gt=0, description="Grid step of a range (int ranges: default 1).")
    type: Literal["categorical", "float", "int"] | None = Field(
        None, description="Domain type; default: categorical with choices, else the config key's own type."
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return {"choices": list(value)}
        if not isinstance(value, dict):
            raise ValueError("must be a list of choices or a mapping with low/high (or choices)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Domain:
        ranged = self.low is not None or self.high is not None
        if self.choices is not None and ranged:
            raise ValueError("give either choices or low/high, not both")
        if self.choices is None:
            if self.low is None or self.high is None:
                raise ValueError("a range needs both low and high (or give choices)")
            if self.type == "categorical":
                raise ValueError("type categorical needs choices")
            if self.low > self.high:
                raise ValueError(f"inverted range: low {self.low:g} > high {self.high:g}")
            if self.low == self.high:
                raise ValueError(f"empty range: low = high = {self.low:g} (set the key itself instead)")
            if self.log and self.low <= 0:
                raise ValueError(f"log scale needs low > 0, got {self.low:g}")
            if self.log and self.step is not None:
                raise ValueError("a log-scale range cannot have a step")
        elif self.type not in (None, "categorical"):
            raise ValueError(f"type {self.type} takes low/high, not choices")
        return self

    @property
    def is_categorical(self) -> bool:
        """Whether this domain is a list of choices."""
        return self.choices is not None


class Budget(CamelModel):
    """Caps on the whole search: no trial is started that the remaining budget cannot hold."""

    trial_epochs: int | None = Field(
        None, ge=1, description="Training epochs summed over all trials (a pruned trial counts the epochs it ran)."
    )
    hours: float | None = Field(None, gt=0, description="Wall-clock hours of the search (summed over resumes).")


class LatencyConfig(CamelModel):
    """How each trial's model is timed for the latency/throughput objective: measured, on the trial's own device."""

    model_config = {
        **CamelModel.model_config,
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "!(has(self.maxMs) && has(self.minVideosPerS))",
                    "message": "give max_ms or min_videos_per_s, not both",
                }
            ]
        },
    }

    batch_size: int = Field(1, ge=1, description="Videos per timed batch (1: the latency of one request).")
    runtime: Literal["onnx", "torch"] = Field("onnx", description="onnx (the exported model, as served) or torch.")
    precision: Literal["fp32", "fp16"] = Field("fp32", description="fp32, or fp16 (GPU only).")
    warmup: int = Field(3, ge=0, description="Untimed batches before timing.")
    repeats: int = Field(10, ge=1, description="Timed batches; the figure is their median.")
    max_ms: float | None = Field(
        None, gt=0, description="Constraint: the promoted model's latency per batch must be at most this (ms)."
    )
    min_videos_per_s: float | None = Field(
        None, gt=0, description="Constraint: the promoted model must process at least this many videos per second."
    )

    @model_validator(mode="after")
    def _one_constraint(self) -> LatencyConfig:
        if self.max_ms is not None and self.min_videos_per_s is not None:
            raise ValueError("give max_ms or min_videos_per_s, not both")
        return self


class SearchConfig(CamelModel):
    """`search:` in config.yaml: a budgeted search over config keys with early stopping."""

    trials: int = Field(20, ge=1, description="Most trials to run (the default config is trial 0 when in the space).")
    parallel: int = Field(1, ge=1, description="Trials run at once (one GPU each; on CPU the cores are divided).")
    budget: Budget = sub(Budget, "Caps in trial-epochs and/or hours.")
    sampler: Sampler = Field(
        "tpe",
        description="tpe (default; multi-objective with two objectives), random, grid (every key needs choices "
        "or a step), or nsga2 (Optuna's NSGA-II, for two objectives).",
    )
    pruner: Pruner = Field("asha", description="asha: successive halving on validation top-1; none: no stopping.")
    min_epochs: int | None = Field(
        None, ge=1, description="ASHA's first rung in epochs (default: epoch / 9, at least one validation interval)."
    )
    reduction_factor: int = Field(3, ge=2, description="ASHA keeps the top 1/reduction_factor at each rung.")
    seed: int | None = Field(None, description="Sampler seed (default: the config's seed).")
    objectives: list[Objective] = Field(
        default_factory=lambda: ["top1"],
        min_length=1,
        max_length=2,
        description="[top1] (default), or [top1, latency] / [top1, throughput]: a multi-objective study "
        "whose Pareto front is reported.",
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self[0] == 'top1' && (size(self) == 1 || self[1] != 'top1')",
                    "message": "objectives: [top1], [top1, latency] or [top1, throughput]",
                }
            ]
        },
    )
    latency: LatencyConfig = sub(LatencyConfig, "How trials are timed, and the optional latency/throughput limit.")
    space: dict[str, Domain] | None = Field(
        None,
        description="Config key -> domain; omitted or 'auto': the default space for the device (printed at start).",
    )

    @field_validator("objectives")
    @classmethod
    def _objectives(cls, value: list[str]) -> list[str]:
        if value[0] != "top1" or len(set(value)) != len(value):
            raise ValueError("objectives: [top1], [top1, latency] or [top1, throughput]")
        return value

    @property
    def speed_objective(self) -> str | None:
        """latency or throughput when the study has a second objective, else None."""
        return self.objectives[1] if len(self.objectives) > 1 else None

    @field_validator("space", mode="before")
    @classmethod
    def _auto(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() == "auto":
            return None
        if isinstance(value, dict) and not value:
            raise ValueError("empty space: name at least one config key, or write 'auto'")
        return value


# The custom resource's name for the same model.
SearchSpec = SearchConfig
