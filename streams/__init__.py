"""The scoring worker's stages and its Faust agents.

Follow a transaction: :mod:`streams.columns` (decode a micro-batch into columns) -> :mod:`streams.scoring`
(dedup, validate, score, score and dead-letter records) -> :mod:`streams.windowing` (offset-aligned windows,
partials) -> :mod:`streams.aggregation` (merged windows, drift.stats). :mod:`streams.labels` joins delayed
labels; :mod:`streams.model` holds the model every stage serves; :mod:`streams.stages` builds them;
:mod:`streams.agents` installs the Faust agents; :mod:`streams.delivery` publishes and acks;
:mod:`streams.lifecycle` restores state on partition assignment; :mod:`streams.frameworks` is the one place
that touches Faust, aiokafka and prometheus_client internals; :mod:`streams.audit` proves nothing was lost.
"""

__all__: list[str] = []
