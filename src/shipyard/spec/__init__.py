"""shipyard.yaml: its models and its loader."""

from shipyard.spec.loader import load
from shipyard.spec.models import (
    APISpec,
    Autoscaling,
    BatchAPI,
    Batching,
    Compute,
    Concurrency,
    InputSchema,
    Monitoring,
    Project,
    RealtimeAPI,
    SchemaField,
    TrafficSplitter,
    UpdateStrategy,
)

__all__ = [
    "APISpec",
    "Autoscaling",
    "BatchAPI",
    "Batching",
    "Compute",
    "Concurrency",
    "InputSchema",
    "Monitoring",
    "Project",
    "RealtimeAPI",
    "SchemaField",
    "TrafficSplitter",
    "UpdateStrategy",
    "load",
]
