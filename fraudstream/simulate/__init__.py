"""The transaction simulator: customers, terminals, fraud scenarios, drift and late labels.

It reproduces the simulator of the "Reproducible Machine Learning for Credit Card Fraud
Detection" handbook (Le Borgne et al.), vectorised with numpy, seeded, with concept-drift
changes from a known day and configurable label delays, to files or to Kafka.

>>> from fraudstream.config.simulate import SimulatorSettings
>>> sim = simulate(SimulatorSettings(customers=100, terminals=200), days=2, seed=7)
>>> bool(sim.transactions["amount"].min() >= 0)
True
"""

from fraudstream.simulate.engine import (
    SCENARIO_AMOUNT,
    SCENARIO_CUSTOMER,
    SCENARIO_NONE,
    SCENARIO_TERMINAL,
    Simulation,
    daily_schedule,
    simulate,
)
from fraudstream.simulate.exceptions import KafkaProduceFailed, OutputFormatUnknown, SimulatorError
from fraudstream.simulate.kafka import ProduceReport, produce
from fraudstream.simulate.output import (
    FileFormat,
    infer_format,
    labels_path_for,
    merged_events,
    merged_order,
    write_labels,
    write_transactions,
)
from fraudstream.simulate.settings import with_overrides

__all__ = [
    "SCENARIO_AMOUNT",
    "SCENARIO_CUSTOMER",
    "SCENARIO_NONE",
    "SCENARIO_TERMINAL",
    "FileFormat",
    "KafkaProduceFailed",
    "OutputFormatUnknown",
    "ProduceReport",
    "Simulation",
    "SimulatorError",
    "daily_schedule",
    "infer_format",
    "labels_path_for",
    "merged_events",
    "merged_order",
    "produce",
    "simulate",
    "with_overrides",
    "write_labels",
    "write_transactions",
]
