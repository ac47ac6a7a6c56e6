"""What every page shares: its context, the live (self-refreshing) part, drawing a chart."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import pandas as pd
import streamlit as st

from breeboost.dashboard.data import Snapshot, Source

__all__ = ["PageContext", "live", "show_problems", "frame", "show_chart"]


@dataclass
class PageContext:
    """A page's source of data, how often its live part refreshes (``None``: never, as in tests) and who
    the operator is (recorded on every acknowledge or close; ``None``: not given yet)."""

    source: Source
    refresh_s: float | None = 3.0
    author: str | None = None


def live(ctx: PageContext, key: str, render: Callable[[Snapshot], None], scores: bool = False) -> None:
    """Render ``render(snapshot)`` in a fragment that reruns by itself every ``ctx.refresh_s`` seconds:
    only this part of the page refreshes, so what the operator types elsewhere stays put. ``scores``: the
    page shows score records (the tails of scores and dead letters are read for it)."""

    @st.fragment(run_every=ctx.refresh_s, key=f"live-{key}")
    def _live() -> None:
        snap = ctx.source.snapshot(scores=scores)
        show_problems(snap)
        render(snap)

    _live()


def show_problems(snap: Snapshot) -> None:
    for where, msg in sorted(snap.problems.items()):
        st.warning(f"{where}: {msg}", icon=":material/warning:")


def show_chart(spec: dict, data: pd.DataFrame | None = None) -> None:
    """Draw a Vega-Lite ``spec`` (:mod:`breeboost.dashboard.ui.charts`) over ``data``, the container's width."""
    st.vega_lite_chart(data, spec, width="stretch")


def frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows)
