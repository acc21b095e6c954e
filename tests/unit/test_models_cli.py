"""Argument handling of ``fraudstream train`` and ``fraudstream tune``."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from fraudstream.cli import app
from fraudstream.config import load_settings
from fraudstream.models.commands import with_model_overrides

runner = CliRunner()


def test_overrides_are_validated_and_nested():
    s = load_settings(None)
    t = with_model_overrides(s, epochs=3, seed=None, **{"split.delay_days": 2.0, "tuning.epochs": 5})
    assert (t.model.epochs, t.model.seed, t.model.split.delay_days, t.model.tuning.epochs) == (
        3, s.model.seed, 2.0, 5)
    assert with_model_overrides(s, epochs=None) is s
    with pytest.raises(ValidationError):
        with_model_overrides(s, epochs=0)


def test_train_reports_a_missing_file(tmp_path):
    result = runner.invoke(app, ["train", "--data", str(tmp_path / "none.csv"), "--out", str(tmp_path / "a")])
    assert result.exit_code == 2
    assert "none.csv" in result.output
    result = runner.invoke(app, ["train", "--data", "x.csv", "--out", str(tmp_path / "a"), "--epochs", "0"])
    assert result.exit_code == 2 and "epochs" in result.output


def test_tune_rejects_bad_options(tmp_path):
    result = runner.invoke(app, ["tune", "--data", "x.csv", "--out", str(tmp_path), "--strategy", "genetic"])
    assert result.exit_code == 2 and "--strategy" in result.output
    result = runner.invoke(app, ["tune", "--data", "x.csv", "--out", str(tmp_path), "--max-trials", "0"])
    assert result.exit_code == 2


def test_train_rejects_a_file_without_labels(tmp_path):
    data = tmp_path / "events.csv"
    data.write_text("transaction_id,timestamp,customer_id,terminal_id,amount\n"
                    "t1,2026-04-01T00:00:00Z,c1,m1,10.0\n")
    result = runner.invoke(app, ["train", "--data", str(data), "--out", str(tmp_path / "a")])
    assert result.exit_code == 2 and "label" in result.output


def test_split_days_are_printed_with_both_ends_included():
    from fraudstream.models.commands import _days

    assert _days("2018-04-01T00:00:00+00:00", "2018-06-01T00:00:00+00:00") == "2018-04-01 to 2018-05-31"
    assert _days("2018-06-08T00:00:00+00:00", "2018-06-15T00:00:00+00:00") == "2018-06-08 to 2018-06-14"
    # validation that runs to the last event ends one microsecond after it, on its own day
    assert _days("2018-06-08T00:00:00+00:00", "2018-09-30T23:59:10.000001+00:00") == "2018-06-08 to 2018-09-30"
