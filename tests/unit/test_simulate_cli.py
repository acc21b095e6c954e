"""`fraudstream simulate`: flags over config over defaults, files named as promised."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest
from typer.testing import CliRunner

from fraudstream.cli import app

SMALL = ["--customers", "120", "--terminals", "240"]


@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for key in [k for k in os.environ if k.startswith("FRAUDSTREAM__")]:
        monkeypatch.delenv(key)
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, ["simulate", *args], catch_exceptions=False)

    return invoke


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_days_and_out_write_transactions_and_labels_beside(run, tmp_path):
    result = run("--days", "3", "--out", "tx.jsonl", *SMALL, "--seed", "4")
    assert result.exit_code == 0, result.output
    tx = lines(tmp_path / "tx.jsonl")
    labels = lines(tmp_path / "tx.labels.jsonl")
    assert tx and len(labels) == len(tx)
    assert {e["customer_id"] for e in tx} <= {f"C{i:05d}" for i in range(120)}
    assert tx[0]["timestamp"].startswith("2026-04-01T")
    assert "transactions over 3 days" in result.output


def test_same_seed_same_file_other_seed_other_file(run, tmp_path):
    for name, seed in (("a.jsonl", "1"), ("b.jsonl", "1"), ("c.jsonl", "2")):
        assert run("--days", "2", "--out", name, *SMALL, "--seed", seed).exit_code == 0
    a, b, c = ((tmp_path / n).read_bytes() for n in ("a.jsonl", "b.jsonl", "c.jsonl"))
    assert a == b and a != c


def test_csv_by_suffix_with_inline_labels_and_no_label_events(run, tmp_path):
    result = run("--days", "2", "--out", "tx.csv", *SMALL, "--inline-labels", "--no-label-events")
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(tmp_path / "tx.csv")
    assert "label" in frame.columns and len(frame) > 0
    assert not (tmp_path / "tx.labels.csv").exists()


def test_labels_out_and_label_delay(run, tmp_path):
    result = run("--days", "2", "--out", "tx.jsonl", "--labels-out", "lab/l.csv", *SMALL,
                 "--label-delay", "36h")
    assert result.exit_code == 0, result.output
    tx = pd.DataFrame(lines(tmp_path / "tx.jsonl")).set_index("transaction_id")
    lab = pd.read_csv(tmp_path / "lab" / "l.csv").set_index("transaction_id")
    delay = pd.to_datetime(lab["timestamp"], utc=True) - pd.to_datetime(
        tx.loc[lab.index, "timestamp"], utc=True
    )
    assert (delay == pd.Timedelta(hours=36)).all()


def test_config_gives_defaults_and_flags_override(run, tmp_path):
    (tmp_path / "cfg.yaml").write_text(
        "simulator:\n"
        "  customers: 90\n  terminals: 200\n  days: 2\n  start_date: 2026-01-10\n"
        "  label_delay: {distribution: uniform, low_days: 1, high_days: 2}\n"
        "  drift:\n    - {day: 1, spending_multiplier: 2.0}\n"
    )
    assert run("--config", "cfg.yaml", "--out", "a.jsonl").exit_code == 0
    tx = lines(tmp_path / "a.jsonl")
    assert {e["timestamp"][:10] for e in tx} == {"2026-01-10", "2026-01-11"}
    assert len({e["customer_id"] for e in tx}) <= 90
    assert run("--config", "cfg.yaml", "--out", "b.jsonl", "--days", "3", "--customers", "300").exit_code == 0
    tx = lines(tmp_path / "b.jsonl")
    assert len({e["timestamp"][:10] for e in tx}) == 3
    assert len({e["customer_id"] for e in tx}) > 90


def test_drift_day_flag_adds_the_stealth_change(run, tmp_path):
    args = ("--days", "8", *SMALL, "--seed", "3", "--inline-labels")
    assert run(*args, "--out", "plain.jsonl").exit_code == 0
    assert run(*args, "--out", "drift.jsonl", "--drift-day", "4").exit_code == 0
    plain = pd.DataFrame(lines(tmp_path / "plain.jsonl"))
    drift = pd.DataFrame(lines(tmp_path / "drift.jsonl"))
    early = plain["timestamp"] < "2026-04-05"
    pd.testing.assert_frame_equal(plain[early], drift[early])
    assert not plain[~early].equals(drift[~early])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--days", "2"), "--out FILE, --kafka"),
        (("--days", "2", "--out", "tx.txt"), "suffix"),
        (("--days", "2", "--out", "tx.jsonl", "--format", "xml"), "jsonl or csv"),
        (("--days", "2", "--out", "tx.jsonl", "--label-delay", "soon"), "simulator.label_delay"),
        (("--days", "2", "--out", "tx.jsonl", "--start-date", "April"), "simulator.start_date"),
    ],
)
def test_bad_arguments_exit_2_naming_the_problem(run, tmp_path, args, message):
    result = run(*args, *SMALL)
    assert result.exit_code == 2
    assert message in result.output.replace("\n", " ")
    assert not list(tmp_path.glob("*.jsonl"))


def test_unknown_suffix_is_fine_with_a_format(run, tmp_path):
    result = run("--days", "1", "--out", "tx.txt", "--format", "csv", *SMALL)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "tx.txt").read_text().startswith("transaction_id,timestamp,")
    assert (tmp_path / "tx.labels.txt").read_text().startswith("transaction_id,label,timestamp")
