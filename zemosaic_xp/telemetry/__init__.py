"""Resource telemetry: CPU/RAM/GPU samples as ZeMosaic ``STATS_UPDATE`` events and a CSV log.

``ResourceTelemetryController`` throttles samples from ``sample_runtime_resources``
into a ``progress_callback`` and ``resource_telemetry.csv``, with a
``BackgroundSampler`` thread that keeps the interval during long phases;
``summarize_telemetry_csv`` and ``plot_telemetry_csv`` read that file back
(the plot needs the ``plot`` extra, matplotlib).
"""

from .background import BackgroundSampler
from .controller import (
    CONTEXT_KEYS,
    DEFAULT_INTERVAL_SEC,
    MIN_INTERVAL_SEC,
    ResourceTelemetryController,
    grid_telemetry_context,
)
from .cpu import CpuMeter
from .csvlog import CSV_FIXED_COLUMNS, DEFAULT_CSV_NAME, TelemetryCsvWriter, read_telemetry_csv
from .plot import format_telemetry_summary, plot_telemetry_csv, summarize_telemetry_csv
from .sampler import GPU_KEYS, SAMPLE_KEYS, reset_resource_probes, sample_runtime_resources

__all__ = [
    "ResourceTelemetryController",
    "BackgroundSampler",
    "CpuMeter",
    "grid_telemetry_context",
    "sample_runtime_resources",
    "reset_resource_probes",
    "TelemetryCsvWriter",
    "read_telemetry_csv",
    "summarize_telemetry_csv",
    "format_telemetry_summary",
    "plot_telemetry_csv",
    "SAMPLE_KEYS",
    "GPU_KEYS",
    "CONTEXT_KEYS",
    "CSV_FIXED_COLUMNS",
    "DEFAULT_CSV_NAME",
    "DEFAULT_INTERVAL_SEC",
    "MIN_INTERVAL_SEC",
]
