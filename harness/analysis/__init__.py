"""Analysis: pure functions from events to frozen results. See `model` for the metric contract."""

from maildrill.harness.analysis.core import analyze
from maildrill.harness.analysis.model import METRICS, Analysis, FaultWindow, MetricInfo, Offender, Series

__all__ = ["METRICS", "Analysis", "FaultWindow", "MetricInfo", "Offender", "Series", "analyze"]
