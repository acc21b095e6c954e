"""Configuration: pydantic-settings models, loaded from YAML then environment overrides."""

from fraudstream.config.settings import (
    CheckpointSettings,
    KafkaSettings,
    MonitoringSettings,
    Settings,
    Thresholds,
    Topics,
    TrainingSettings,
    load_settings,
    masked_dump,
)

__all__ = [
    "CheckpointSettings",
    "KafkaSettings",
    "MonitoringSettings",
    "Settings",
    "Thresholds",
    "Topics",
    "TrainingSettings",
    "load_settings",
    "masked_dump",
]
