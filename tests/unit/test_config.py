"""Configuration: file + environment, frozen, bad values name their key."""

from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from fraudstream.cli import app
from fraudstream.config import load_settings
from fraudstream.errors import ConfigInvalid

EXAMPLE = Path(__file__).resolve().parents[2] / "fraudstream.example.yaml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


def test_defaults_load_without_a_file():
    settings = load_settings()
    assert settings.kafka.topics.transactions == "transactions"
    assert settings.training.minibatch_size == 64


def test_example_file_is_valid():
    settings = load_settings(EXAMPLE)
    assert settings.kafka.bootstrap_servers


def test_wrong_type_names_the_key(tmp_path):
    with pytest.raises(ConfigInvalid) as info:
        load_settings(write(tmp_path, "kafka:\n  batch_size: many\n"))
    assert ("kafka.batch_size" in str(info.value)) and info.value.problems[0][0] == "kafka.batch_size"


def test_unknown_key_is_an_error(tmp_path):
    with pytest.raises(ConfigInvalid, match="kafka.bootstrap_server"):
        load_settings(write(tmp_path, "kafka:\n  bootstrap_server: x:1\n"))


def test_environment_overrides_file(tmp_path, monkeypatch):
    path = write(tmp_path, "kafka:\n  group_id: from-file\n  batch_size: 10\n")
    monkeypatch.setenv("FRAUDSTREAM__KAFKA__GROUP_ID", "from-env")
    settings = load_settings(path)
    assert settings.kafka.group_id == "from-env"
    assert settings.kafka.batch_size == 10


def test_bad_environment_value_names_the_key(monkeypatch):
    monkeypatch.setenv("FRAUDSTREAM__TRAINING__MINIBATCH_SIZE", "zero")
    with pytest.raises(ConfigInvalid, match="training.minibatch_size"):
        load_settings()


def test_settings_are_frozen():
    settings = load_settings()
    with pytest.raises(ValidationError):
        settings.kafka.batch_size = 3


def test_sasl_needs_credentials(tmp_path):
    with pytest.raises(ConfigInvalid, match="kafka"):
        load_settings(write(tmp_path, "kafka:\n  security_protocol: SASL_SSL\n"))


def test_secrets_are_masked_in_config_show(tmp_path):
    path = write(
        tmp_path,
        "kafka:\n  security_protocol: SASL_SSL\n  sasl_mechanism: PLAIN\n"
        "  sasl_username: u\n  sasl_password: hunter2\n",
    )
    result = CliRunner().invoke(app, ["config", "show", "--config", str(path)])
    assert result.exit_code == 0, result.output
    assert "hunter2" not in result.output
    assert "**********" in result.output


def test_config_check_exit_codes(tmp_path):
    runner = CliRunner()
    assert runner.invoke(app, ["config", "check", str(EXAMPLE)]).exit_code == 0
    bad = runner.invoke(app, ["config", "check", str(write(tmp_path, "kafka:\n  batch_size: many\n"))])
    assert bad.exit_code != 0
    assert "kafka.batch_size" in bad.output
