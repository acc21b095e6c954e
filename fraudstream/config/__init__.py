"""Configuration: pydantic-settings models, loaded from YAML then environment overrides."""

from fraudstream.config.settings import (
    CheckpointSettings,
    EventTimeSettings,
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
    "EventTimeSettings",
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
