"""The shared feature module: events in, model inputs out, the same rows offline and online.

``FeaturePipeline(spec)`` is configured by the ``features:`` section of the config
(:class:`fraudstream.config.features.FeatureSpec`); see ``docs/features.md``.
"""

from fraudstream.features.events import REASONS, Transaction, iso_utc
from fraudstream.features.exceptions import FeatureInputInvalid, FeatureStateInvalid
from fraudstream.features.io import EventChunks, load_state, read_events, save_state, write_table
from fraudstream.features.normalize import Normalizer
from fraudstream.features.pipeline import SCHEMA_VERSION, FeaturePipeline, describe_state

__all__ = [
    "REASONS",
    "SCHEMA_VERSION",
    "FeatureInputInvalid",
    "FeaturePipeline",
    "FeatureStateInvalid",
    "Normalizer",
    "Transaction",
    "describe_state",
    "iso_utc",
    "EventChunks",
    "load_state",
    "read_events",
    "save_state",
    "write_table",
]
