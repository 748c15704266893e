"""A Ctrl-C in the middle of variant scoring, for the tests of what an interrupted run keeps."""
from __future__ import annotations

import genomix.variants.score as score_module


def interrupt_causal_scoring(monkeypatch, at: int) -> list[int]:
    """Make batch number ``at`` (1-based) of causal scoring raise KeyboardInterrupt, as Ctrl-C would; returns the
    list that gets one entry per batch started, for the caller to count (``monkeypatch.undo()`` or setting
    ``score_module._score_causal`` back restores the real scoring)."""
    real, calls = score_module._score_causal, []

    def interrupting(*args):
        calls.append(1)
        if len(calls) == at:
            raise KeyboardInterrupt
        real(*args)

    monkeypatch.setattr(score_module, "_score_causal", interrupting)
    return calls
