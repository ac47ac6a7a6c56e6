"""The Faust application: scoring and drift agents, the drift aggregator and the label join."""

__all__: list[str] = []
