"""PaySim-faithful transaction generator, drift and bad-input scenarios, and the Kafka producer."""

__all__: list[str] = []
