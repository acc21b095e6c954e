"""Configuration: pydantic-settings models, loaded from YAML then environment overrides."""

from fraudstream.config.settings import (
    CheckpointSettings,
    KafkaSettings,
    LifecycleSettings,
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
    "LifecycleSettings",
    "MonitoringSettings",
    "Settings",
    "Thresholds",
    "Topics",
    "TrainingSettings",
    "load_settings",
    "masked_dump",
]
