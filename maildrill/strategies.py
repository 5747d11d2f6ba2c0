"""Hypothesis strategies for fault schedules and the sender state machine (see maildrill.harness.strategies)."""

from maildrill.harness.strategies import (
    SenderStateMachine,
    behaviors,
    schedule_yaml,
    timelines,
    toxics,
)

__all__ = ["SenderStateMachine", "behaviors", "schedule_yaml", "timelines", "toxics"]
