"""Synthetic raw request logs for the WildChat pipeline (no Dagster dependency on purpose).

``generate_logs`` simulates chatbot traffic with the edge cases the pipeline must handle;
``replay_conversations`` writes existing conversations as request logs for round-trip tests.
"""

from __future__ import annotations

from wildchat_dag.loggen.generator import FeatureRates, GenerationSummary, generate_logs
from wildchat_dag.loggen.replay import (
    ReplayedConversation,
    fill_missing_turns,
    replay_conversations,
)

__all__ = [
    "FeatureRates",
    "GenerationSummary",
    "ReplayedConversation",
    "fill_missing_turns",
    "generate_logs",
    "replay_conversations",
]
