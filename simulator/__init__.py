"""PaySim-faithful transaction generator, drift and bad-input scenarios, and the Kafka producer.

* :func:`generate` - columnar PaySim transactions, deterministic in ``(seed, event index)``;
* :func:`encode_events` - one JSON payload per event (orjson), with or without the label;
* :func:`parse_scenario` - ``"name:k=v,..."`` to a scheduled scenario (see docs/simulator.md);
* :func:`write_file` - labelled JSON lines or CSV;
* :class:`simulator.producer.Publisher` - publishing to Kafka (imported on demand: it needs kafka-python).

>>> cols = generate(3, seed=0, scenarios=["amount_scale:factor=2"])
>>> len(encode_events(cols, with_label=False))
3
"""
from simulator.encode import encode_events, write_file
from simulator.errors import ScenarioError, SimulatorError
from simulator.generator import DEFAULT_START_TIME, TransactionGenerator, generate
from simulator.scenarios import SCENARIOS, ScheduledScenario, parse_scenario

__all__ = ["generate", "encode_events", "write_file", "parse_scenario", "ScheduledScenario", "SCENARIOS",
           "TransactionGenerator", "DEFAULT_START_TIME", "SimulatorError", "ScenarioError"]
