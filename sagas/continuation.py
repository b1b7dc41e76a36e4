"""When a saga's long wait goes on in a new run (continue-as-new).

A wait that polls (a payment stuck for days, a deposit never confirmed) adds a few
events to the history each round; Temporal caps a history (50,000 events by default)
and warns long before. The saga carries what the wait needs into a new run instead.
"""

from __future__ import annotations

from temporalio import workflow


def history_full(limit: int) -> bool:
    """In a workflow: time to go on in a new run. The server suggests it, or this run's
    history reached the saga's own `limit` (a setting, so tests can reach it quickly)."""
    info = workflow.info()
    return info.is_continue_as_new_suggested() or info.get_current_history_length() >= limit
