"""The dashboard's pages (Streamlit), one module each, each with ``render(ctx: PageContext)``:
:mod:`~breeboost.dashboard.ui.overview`, :mod:`~breeboost.dashboard.ui.transactions`,
:mod:`~breeboost.dashboard.ui.drift`, :mod:`~breeboost.dashboard.ui.health`,
:mod:`~breeboost.dashboard.ui.incidents`, :mod:`~breeboost.dashboard.ui.simulator`; what they share is in
:mod:`~breeboost.dashboard.ui.common`. The numbers they show come from :mod:`breeboost.dashboard.views`."""
from __future__ import annotations

__all__: list[str] = []
