"""Analysis: pure functions from events to frozen results. See `model` for the metric contract."""

from typing import TYPE_CHECKING, Any

from maildrill.harness.analysis.model import METRICS, Analysis, FaultWindow, MetricInfo, Offender, Series

if TYPE_CHECKING:
    from maildrill.harness.analysis.core import analyze

__all__ = ["METRICS", "Analysis", "FaultWindow", "MetricInfo", "Offender", "Series", "analyze"]


def __getattr__(name: str) -> Any:
    # `analyze` (and with it numpy) on first use: the split's second process imports this package for its pass only
    if name == "analyze":
        from maildrill.harness.analysis.core import analyze

        return analyze
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
