"""Pydantic models of shipyard.yaml: every key, its default and its limits.

Each API is one of three kinds, chosen by `kind` (default `RealtimeAPI`). Unknown keys are errors.
"""

from __future__ import annotations

import json
import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from shipyard.registry.refs import check_model_ref
from shipyard.spec.units import ByteSize, CountOrPercent, Cpu, Duration

NAME_PATTERN = r"^[a-z][a-z0-9-]{0,62}$"
BUILTIN_HANDLERS = ("sklearn", "onnx")
_HANDLER_PATTERN = re.compile(r"^[^:]+\.py:[A-Za-z_][A-Za-z0-9_]*$")
_MEDIA_TYPE = re.compile(r"^(\*/\*|[A-Za-z0-9][\w.+-]*/(\*|[A-Za-z0-9][\w.+-]*))$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Batching(_Strict):
    """Dynamic batching: concurrent requests are gathered into one `predict_batch` call."""

    max_batch_size: int = Field(32, ge=1, le=100_000)
    """Most requests in one batch."""
    max_wait_ms: float = Field(5.0, ge=0, le=60_000)
    """Longest a request waits for its batch to fill, in milliseconds."""


class Concurrency(_Strict):
    """Admission limits per replica: beyond them a request gets 503 with Retry-After at once."""

    max_concurrency: int = Field(1, ge=1, le=10_000)
    """Predictions that run at once in one replica (with batching: batches). One suits handlers that hold
    the GIL (most numpy/scikit-learn code); raise it for handlers that wait on I/O or release the GIL."""
    max_queue_length: int = Field(100, ge=0, le=1_000_000)
    """Requests that may wait for a free slot."""


class Autoscaling(_Strict):
    """Request-based autoscaling; the semantics follow Cortex's."""

    min_replicas: int = Field(1, ge=0, le=1000)
    max_replicas: int = Field(100, ge=1, le=1000)
    init_replicas: int | None = Field(None, ge=0, le=1000)
    """Replicas at first deploy; defaults to min_replicas."""
    target_in_flight: float | None = Field(None, gt=0)
    """In-flight requests per replica to aim for; defaults to max_concurrency."""
    window: Duration = 60.0
    """Span over which in-flight requests are averaged."""
    upscale_stabilization: Duration = 60.0
    downscale_stabilization: Duration = 300.0
    max_upscale_factor: float = Field(1.5, gt=1)
    max_downscale_factor: float = Field(0.75, gt=0, lt=1)
    upscale_tolerance: float = Field(0.05, ge=0)
    downscale_tolerance: float = Field(0.05, ge=0)

    @model_validator(mode="after")
    def _bounds(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas ({self.min_replicas}) must be <= max_replicas ({self.max_replicas})")
        init = self.init_replicas
        if init is not None and not self.min_replicas <= init <= self.max_replicas:
            raise ValueError(
                f"init_replicas ({init}) must lie between min_replicas ({self.min_replicas}) "
                f"and max_replicas ({self.max_replicas})"
            )
        return self


class UpdateStrategy(_Strict):
    """How a rolling update replaces replicas (counts or percentages of the desired replicas)."""

    max_surge: CountOrPercent = "25%"
    """Extra replicas allowed above the desired count during an update."""
    max_unavailable: CountOrPercent = "25%"
    """Replicas that may be missing below the desired count during an update."""

    @model_validator(mode="after")
    def _progress_possible(self) -> UpdateStrategy:
        if self.max_surge in (0, "0%") and self.max_unavailable in (0, "0%"):
            raise ValueError("max_surge and max_unavailable cannot both be 0: the update could never proceed")
        return self


class HealthCheck(_Strict):
    """How the daemon checks a replica: GET /readyz about every tick of its control loop, one check at a time."""

    timeout: Duration = Field(1.0, gt=0, le=60)
    """Longest one check may take before it counts as failed."""
    failure_threshold: int = Field(3, ge=1, le=100)
    """Checks failed in a row after which a ready replica gets no traffic (until one passes); a refused
    connection takes it out at once."""
    unhealthy_after: Duration = Field(30.0, gt=0)
    """A ready replica whose checks keep failing this long is hung: it is killed and replaced."""


class Compute(_Strict):
    """Resources one replica asks for."""

    cpu: Cpu = 1.0
    mem: ByteSize | None = None
    gpu: int = Field(0, ge=0)


class SLO(_Strict):
    p99_ms: float | None = Field(None, gt=0)
    """Latency objective: the 99th percentile stays under this many milliseconds."""
    error_rate: float | None = Field(None, ge=0, le=1)
    """Error objective: the share of 5xx responses stays under this."""


class Monitoring(_Strict):
    sample_rate: float = Field(0.0, ge=0, le=1)
    """Share of requests written to the prediction log."""
    slo: SLO = SLO()


class FieldType(StrEnum):
    float = "float"  #: any number
    int = "int"  #: a whole number
    str = "str"  #: a string
    bool = "bool"  #: true or false


class SchemaField(_Strict):
    type: FieldType
    required: bool = True
    enum: list[Any] | None = None
    """Allowed categories; a value outside is an unknown category."""
    min: float | None = Field(None, allow_inf_nan=False)
    max: float | None = Field(None, allow_inf_nan=False)

    @model_validator(mode="after")
    def _range(self) -> SchemaField:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) must be <= max ({self.max})")
        if (self.min is not None or self.max is not None) and self.type not in (
            FieldType.float,
            FieldType.int,
        ):
            raise ValueError(f"min/max apply to float and int fields, not {self.type.value}")
        wrong = [value for value in self.enum or [] if not _is_of_type(value, self.type)]
        if wrong:
            words = {"float": "numbers", "int": "whole numbers", "str": "strings", "bool": "true or false"}
            raise ValueError(
                f"enum values of {'an' if self.type is FieldType.int else 'a'} {self.type.value} field must be "
                f"{words[self.type.value]}, got {json.dumps(wrong)}"
            )
        return self


def _is_of_type(value: Any, kind: FieldType) -> bool:
    """What the schema check accepts for a field of `kind` (booleans are never numbers)."""
    if kind is FieldType.str:
        return isinstance(value, str)
    if kind is FieldType.bool:
        return isinstance(value, bool)
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    return is_number and (kind is FieldType.float or float(value).is_integer())


class InputSchema(_Strict):
    """The shape of one input record; a payload may be one record or a list of them."""

    fields: dict[str, SchemaField]
    unknown_categories: Literal["reject", "warn"] = "reject"
    """`reject` answers 422; `warn` lets the request through and counts it in /metrics."""
    extra_fields: Literal["allow", "reject"] = "allow"
    """Whether a record may carry fields the schema does not name."""

    @field_validator("fields")
    @classmethod
    def _some_fields(cls, value: dict[str, SchemaField]) -> dict[str, SchemaField]:
        if not value:
            raise ValueError("must name at least one field, as `name: {type: float}`")
        return value


class _APIBase(_Strict):
    name: str = Field(pattern=NAME_PATTERN)
    """Lower-case letters, digits and '-', starting with a letter; it is the URL path of the API."""
    handler: str
    """`file.py:Class` inside the project, or a built-in: sklearn, onnx."""
    model: str | None = None
    """A path inside the project, or a registry reference `models:/NAME@ALIAS` / `models:/NAME:VERSION`."""
    config: dict[str, Any] = Field(default_factory=dict)
    """Passed to the handler's __init__ as-is."""
    input_schema: InputSchema | None = Field(None, alias="schema")
    compute: Compute = Compute()

    @field_validator("handler")
    @classmethod
    def _handler_form(cls, value: str) -> str:
        if value in BUILTIN_HANDLERS or _HANDLER_PATTERN.match(value):
            return value
        raise ValueError(
            f"must be 'file.py:ClassName' or a built-in handler ({', '.join(BUILTIN_HANDLERS)}), got {value!r}"
        )

    @field_validator("model")
    @classmethod
    def _model_form(cls, value: str | None) -> str | None:
        if value is not None and value.startswith("models:/"):
            check_model_ref(value)  # the registry's own grammar, so what validates also resolves
        return value

    @property
    def is_builtin_handler(self) -> bool:
        return self.handler in BUILTIN_HANDLERS


class RealtimeAPI(_APIBase):
    """An HTTP API served by replicas behind the gateway."""

    kind: Literal["RealtimeAPI"] = "RealtimeAPI"
    batching: Batching | None = None
    concurrency: Concurrency = Concurrency()
    timeout: Duration = Field(60.0, gt=0)
    """Longest one prediction may take before the caller gets 504."""
    max_body_size: ByteSize = Field(10 * 1024**2, ge=1)
    content_types: list[str] | None = None
    """Accepted request media types (`*/*`, `text/*`); default: JSON only with a schema or a
    built-in handler, anything otherwise."""
    grace_period: Duration = 30.0
    """On shutdown, how long in-flight requests may take to finish."""
    startup_timeout: Duration = Field(300.0, gt=0)
    """A replica not ready this long after it started has failed (its handler hangs while loading)."""
    health_check: HealthCheck = HealthCheck()
    autoscaling: Autoscaling = Autoscaling()
    update_strategy: UpdateStrategy = UpdateStrategy()
    monitoring: Monitoring = Monitoring()

    @field_validator("content_types")
    @classmethod
    def _media_types(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return value
        if not value:
            raise ValueError("must list at least one media type such as application/json (or leave it out)")
        wrong = [item for item in value if not _MEDIA_TYPE.match(item)]
        if wrong:
            raise ValueError(
                f"must be media types such as application/json, text/* or */*, got {', '.join(map(repr, wrong))}"
            )
        return [item.lower() for item in value]

    def accepted_content_types(self) -> list[str]:
        if self.content_types is not None:
            return self.content_types
        if self.input_schema is not None or self.is_builtin_handler:
            return ["application/json"]
        return ["*/*"]


class BatchAPI(_APIBase):
    """Durable batch jobs over files, run by worker processes."""

    kind: Literal["BatchAPI"]
    batch_size: int = Field(1000, ge=1, le=1_000_000)
    workers: int = Field(1, ge=1, le=256)
    max_retries: int = Field(2, ge=0, le=100)
    timeout: Duration | None = Field(None, gt=0)
    """Longest a whole job may run; none by default."""
    batch_timeout: Duration = Field(3600.0, gt=0)
    """Longest one attempt at a batch may run (row by row: one row); then its worker is killed and replaced,
    and the attempt counts as failed."""


class SplitTarget(_Strict):
    name: str = Field(pattern=NAME_PATTERN)
    weight: float = Field(ge=0, le=100)
    """Share of traffic in percent; for a shadow, the share of requests copied to it."""
    shadow: bool = False


class TrafficSplitter(_Strict):
    """Routes `/<name>` among RealtimeAPIs by weight, with optional shadow copies."""

    kind: Literal["TrafficSplitter"]
    name: str = Field(pattern=NAME_PATTERN)
    apis: list[SplitTarget] = Field(min_length=1)

    @model_validator(mode="after")
    def _weights(self) -> TrafficSplitter:
        primary = [api for api in self.apis if not api.shadow]
        if not primary:
            raise ValueError("needs at least one API that is not a shadow")
        total = sum(api.weight for api in primary)
        if abs(total - 100) > 1e-6:
            raise ValueError(f"weights of the non-shadow APIs must sum to 100, got {total:g}")
        names = [api.name for api in self.apis]
        if len(set(names)) != len(names):
            raise ValueError(f"each API may appear once, got {names}")
        return self


def _kind_of(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("kind", "RealtimeAPI"))
    return str(getattr(value, "kind", "RealtimeAPI"))


APISpec = Annotated[
    Annotated[RealtimeAPI, Tag("RealtimeAPI")]
    | Annotated[BatchAPI, Tag("BatchAPI")]
    | Annotated[TrafficSplitter, Tag("TrafficSplitter")],
    Discriminator(_kind_of),
]
KINDS = ("RealtimeAPI", "BatchAPI", "TrafficSplitter")


class Project(BaseModel):
    """A loaded shipyard.yaml: its APIs and the directory every relative path is resolved against."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    apis: list[APISpec]
    directory: str
    source: str

    def get(self, name: str) -> RealtimeAPI | BatchAPI | TrafficSplitter:
        for api in self.apis:
            if api.name == name:
                return api
        raise KeyError(name)
