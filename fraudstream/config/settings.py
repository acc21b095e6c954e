"""The effective configuration: a YAML file, then ``FRAUDSTREAM__SECTION__KEY`` overrides.

Every section is frozen once loaded and every unknown key is an error, so a typo or a bad
value stops the process at start with the key's dotted path in the message.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from fraudstream.config.base import Section
from fraudstream.config.features import FeatureSpec
from fraudstream.config.model import ModelParams
from fraudstream.config.simulate import SimulatorSettings
from fraudstream.errors import ConfigInvalid

ENV_PREFIX = "FRAUDSTREAM__"
ENV_DELIMITER = "__"


class Topics(Section):
    transactions: str = "transactions"
    labels: str = "labels"
    scores: str = "scores"
    dlq: str = "transactions.dlq"


class KafkaSettings(Section):
    client: Literal["kafka-python", "confluent"] = Field(
        "kafka-python", description="Kafka client library: kafka-python, or confluent (librdkafka)"
    )
    bootstrap_servers: str = "127.0.0.1:9092"
    topics: Topics = Topics()
    group_id: str = "fraudstream"
    client_id: str = "fraudstream"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_password: SecretStr | None = None
    batch_size: int = Field(500, ge=1, le=100_000, description="max records per poll")
    poll_timeout_ms: int = Field(100, ge=0)
    fetch_max_wait_ms: int = Field(5, ge=0, description="broker waits at most this for data")
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    max_event_bytes: int = Field(65_536, ge=256, description="larger events go to the DLQ")
    rejoin_after_s: float | None = Field(
        None, gt=0, description="rebuild a consumer left without partitions this long (off: null)"
    )
    group_instance_id: str | None = Field(
        "auto", pattern=r"^[A-Za-z0-9._-]{1,249}$",
        description="static group member id: a restart gets its partitions back at once (auto: "
        "host name + hash of the checkpoint directory; null: dynamic membership)",
    )

    @model_validator(mode="after")
    def _sasl_needs_credentials(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL") and not (
            self.sasl_mechanism and self.sasl_username and self.sasl_password
        ):
            raise ValueError(
                "security_protocol SASL_* needs sasl_mechanism, sasl_username and sasl_password"
            )
        return self


class Thresholds(Section):
    """Score cut-offs for the decision written with each score (``approve`` below both)."""

    review: float = Field(0.5, ge=0.0, le=1.0)
    block: float = Field(0.9, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if self.review > self.block:
            raise ValueError("review threshold must not exceed block threshold")
        return self


class TrainingSettings(Section):
    """Online learning from late labels."""

    enabled: bool = True
    minibatch_size: int = Field(64, ge=1)
    replay_size: int = Field(20_000, ge=0, description="rows kept in the replay reservoir")
    replay_ratio: float = Field(1.0, ge=0.0, description="replayed rows per fresh row")
    replay_fraud_share: float = Field(0.5, ge=0.0, le=1.0, description="reservoir share kept for frauds")
    replay_steps: int = Field(0, ge=0, le=16, description="extra replay-only steps per mini-batch")
    pending_max: int = Field(2_000_000, ge=1, description="scored rows awaiting a label")
    pending_ttl_days: float = Field(30.0, gt=0, description="event-time days a row waits")
    pending_bulk_expiry_rows: int = Field(
        1_000, ge=1, description="more rows than this expiring in one batch: a warning and a metric"
    )


class EventTimeSettings(Section):
    """How far an event's own time may stray before it goes to the DLQ (daemon and replay).

    Checked per input partition against its watermark (the newest event time accepted on
    it), so one producer with a bad clock cannot move event time for everything else. A
    partition's first event has no watermark: only the wall-clock bound and ``earliest``
    apply to it. None switches a bound off.
    """

    max_ahead_s: float | None = Field(
        86_400.0, gt=0, description="future_timestamp: more than this ahead of the wall clock"
    )
    max_ahead_of_watermark_s: float | None = Field(
        86_400.0, gt=0,
        description="future_timestamp: more than this (plus the wall time since the watermark moved) ahead of it",
    )
    max_late_days: float | None = Field(
        30.0, gt=0, description="stale_timestamp: more than this behind the partition's watermark"
    )
    earliest: datetime | None = Field(None, description="stale_timestamp: before this instant (UTC if no offset)")
    jump_after: int | None = Field(
        10, ge=1, description="this many events in a row ahead of the watermark: its clock jumped; accept"
    )


class LifecycleSettings(Section):
    """Champion / challenger: the served model and the online learner, both scored on every
    transaction; the learner replaces the served model only when it ranks frauds better.

    Off, the learner serves every score itself (each training step is live at once).
    """

    enabled: bool = False
    window: int = Field(10_000, ge=10, description="last N labelled rows the two models are compared on")
    min_labels: int = Field(5_000, ge=10, description="rows in the window before any decision")
    promote_margin: float = Field(
        0.02, ge=0.0, le=1.0, description="challenger AP must beat the champion's by this to be promoted"
    )
    rollback_margin: float = Field(
        0.05, ge=0.0, le=1.0, description="challenger AP this far below the champion's: reset it to the champion"
    )

    @model_validator(mode="after")
    def _min_labels_fit(self) -> LifecycleSettings:
        if self.min_labels > self.window:
            raise ValueError("min_labels must not exceed window")
        return self


class CheckpointSettings(Section):
    directory: Path = Path("checkpoints")
    every_steps: int = Field(1000, ge=1)
    every_seconds: float = Field(60.0, gt=0)
    keep: int = Field(3, ge=1)


class MonitoringSettings(Section):
    """HTTP endpoints, prequential evaluation, drift detection and what to do on drift.

    Drift fields are flat (``drift_*``) so each one is a single env override, e.g.
    ``FRAUDSTREAM__MONITORING__DRIFT_ACTION=adapt``.
    """

    host: str = "127.0.0.1"
    port: int = Field(9108, ge=0, le=65535, description="0 picks a free port")
    prequential_window: int = Field(10_000, ge=10, description="last N labelled rows evaluated")
    prequential_days: int = Field(7, ge=1, description="event-time days kept for per-day metrics")
    ap_alert_threshold: float = Field(
        0.2, ge=0.0, le=1.0, description="exported for the 'average precision low' alert rule"
    )
    drift_adwin_delta: float = Field(
        1e-5, gt=0.0, lt=1.0, description="ADWIN on log loss; set for at most 1 false alarm per 180-day backtest"
    )
    drift_page_hinkley_threshold: float = Field(50.0, gt=0.0, description="lambda, score mean")
    drift_page_hinkley_min_instances: int = Field(1_000, ge=1)
    drift_page_hinkley_delta: float = Field(0.005, ge=0.0)
    drift_page_hinkley_alpha: float = Field(
        1.0, gt=0.0, le=1.0, description="1 = classic test; <1 forgets, false alarms on skew"
    )
    drift_warmup_days: float | None = Field(
        None, ge=0.0, description="event-time days from the first event the feature windows took before the "
        "detectors judge rows; None: the windows' own warm-up (longest window plus its label delay)"
    )
    drift_psi_bins: int = Field(10, ge=2, le=100, description="reference quantile bins")
    drift_psi_threshold: float = Field(0.25, gt=0.0, description="PSI above this is a drift")
    drift_psi_window: int = Field(5_000, ge=100, description="scored rows per PSI evaluation")
    drift_action: Literal["none", "checkpoint", "adapt"] = "none"
    drift_action_detectors: tuple[Literal["adwin", "page_hinkley", "psi"], ...] = (
        "adwin",
        "page_hinkley",
    )
    drift_adapt_lr_multiplier: float = Field(3.0, gt=0.0, description="learning rate x this")
    drift_adapt_recent_share: float = Field(
        0.8, ge=0.0, le=1.0, description="mini-batch share of fresh rows while adapting"
    )
    drift_adapt_steps: int = Field(200, ge=1, description="training steps the adaptation lasts")
    drift_adapt_replay_keep: float = Field(
        0.2, ge=0.0, le=1.0, description="share of the replay reservoir kept when adapting starts"
    )
    api_token: SecretStr | None = Field(
        None, description="bearer token the /v1 scoring API requires; none: no auth (bind 127.0.0.1)"
    )
    api_max_body_bytes: int = Field(
        1_048_576, ge=1_024, description="larger /v1 request bodies are refused with 413"
    )


class ReplaySettings(Section):
    """``fraudstream replay``: files are read this many rows at a time, so its memory is
    bounded by this and not by the files' size."""

    chunk_rows: int = Field(20_000, ge=1_000, le=10_000_000, description="rows read from a file at a time")


class Settings(BaseSettings):
    """The whole configuration. Build it with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_DELIMITER,
        env_parse_none_str="null",  # e.g. FRAUDSTREAM__KAFKA__GROUP_INSTANCE_ID=null, as in the file
        frozen=True,
        extra="forbid",
    )

    kafka: KafkaSettings = KafkaSettings()
    features: FeatureSpec = FeatureSpec()
    model: ModelParams = ModelParams()
    thresholds: Thresholds = Thresholds()
    training: TrainingSettings = TrainingSettings()
    event_time: EventTimeSettings = EventTimeSettings()
    lifecycle: LifecycleSettings = LifecycleSettings()
    checkpoints: CheckpointSettings = CheckpointSettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    replay: ReplaySettings = ReplaySettings()
    simulator: SimulatorSettings = SimulatorSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file's values come in as init kwargs; environment overrides win over them.
        return (env_settings, init_settings)


def _key_path(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "<root>"


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError as exc:
        raise ConfigInvalid(str(path), [("<file>", "no such file")]) from exc
    except yaml.YAMLError as exc:
        raise ConfigInvalid(str(path), [("<file>", f"not valid YAML: {exc}")]) from exc
    if not isinstance(data, dict):
        raise ConfigInvalid(str(path), [("<root>", "the file must hold a mapping of sections")])
    return data


def load_settings(path: Path | str | None = None, **overrides: Any) -> Settings:
    """Load the file at ``path`` (if any), apply environment overrides, validate, freeze.

    ``overrides`` (whole sections) are merged over the file, for tests and commands.
    """
    data = read_yaml(Path(path)) if path else {}
    data.update(overrides)
    source = str(path) if path else "defaults and environment"
    if any(k.startswith(ENV_PREFIX) for k in os.environ):
        source += " + FRAUDSTREAM__* environment"
    try:
        return Settings(**data)
    except ValidationError as exc:
        problems = [(_key_path(err["loc"]), err["msg"]) for err in exc.errors()]
        raise ConfigInvalid(source, problems) from exc


def masked_dump(settings: Settings) -> dict[str, Any]:
    """The effective configuration as plain data, secrets shown as ``**********``."""
    return settings.model_dump(mode="json")
