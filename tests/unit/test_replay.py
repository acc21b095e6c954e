"""``replay`` from a date, over files read in chunks: what it scores, the feature rows it
computes, its report window and its ``scores.csv``."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from fraudstream.cli import app
from fraudstream.config import load_settings
from fraudstream.config.simulate import SimulatorSettings
from fraudstream.daemon.engine import Engine
from fraudstream.daemon.replay import _Codes, run_replay, write_report
from fraudstream.features import Transaction
from fraudstream.models.evaluation import card_precision_per_day
from fraudstream.simulate.engine import simulate
from fraudstream.simulate.output import write_transactions

DAY = 86_400.0
CHUNK_ROWS = 1_000  # several chunks per run, so the merge across chunks is exercised


@pytest.fixture(scope="module")
def stream(tmp_path_factory):
    path = tmp_path_factory.mktemp("replay") / "tx.jsonl"
    write_transactions(simulate(SimulatorSettings(customers=120, terminals=240), days=24, seed=4), path,
                       inline_labels=True)
    return path


def settings_for(**sections):
    return load_settings(replay={"chunk_rows": CHUNK_ROWS}, **sections)


def replay_recording_rows(settings, stream, **options):
    """Replay, recording each transaction's raw feature row (before normalisation, which a
    fresh model learns as it goes) as the one feature module computed it."""
    pipeline = Engine.create(settings)
    rows: dict[str, np.ndarray] = {}
    compute = pipeline.features.replay_many

    def recording(items):
        items = list(items)
        X = compute(items)
        txs = [item for item in items if type(item) is Transaction]  # the rest: (transaction, label)
        rows.update(zip((tx.transaction_id for tx in txs), X))
        return X

    pipeline.features.replay_many = recording
    result, pipeline = run_replay(settings, stream, label_delay="7d", pipeline=pipeline, **options)
    return result, pipeline, rows


def test_replay_from_a_date_scores_nothing_before_it_and_computes_the_full_replays_rows(stream):
    settings = settings_for()
    frame = pd.read_json(stream, lines=True, dtype=False)
    times = (pd.to_datetime(frame["timestamp"], utc=True) - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy()
    start = float(np.floor(times.min() / DAY) * DAY + 12 * DAY)  # midnight, 12 days in
    after = set(frame.loc[times >= start, "transaction_id"])

    full, _, full_rows = replay_recording_rows(settings, stream)
    part, pipeline, part_rows = replay_recording_rows(settings, stream, start=start)

    scored = set(part.scores["transaction_id"])
    assert scored == after  # every transaction from the date, none before it
    # the transactions before the date, and the labels known before it
    assert part.counters["events_before_from"] == int((times < start).sum() + (times + 7 * DAY < start).sum())
    assert part.times.min() >= start and part.counters["labels_joined"] == len(after)  # learned: only these
    assert pipeline.trainer.rows_learned + part.counters["rows_not_learned_partial_minibatch"] == len(after)
    ids = sorted(after)
    np.testing.assert_array_equal(np.stack([part_rows[i] for i in ids]), np.stack([full_rows[i] for i in ids]))
    # the windows' label counts are part of the rows: the labels learned before the date count
    frauds = [n for n, name in enumerate(pipeline.features.feature_names) if "fraud" in name]
    assert frauds and np.stack([part_rows[i] for i in ids])[:, frauds].any()
    assert full.counters["transactions_scored"] == len(frame)


def test_report_from_covers_only_its_window_and_scores_keep_the_inputs_id_column(tmp_path):
    sim = simulate(SimulatorSettings(customers=100, terminals=200), days=16, seed=2)
    tx = sim.transactions
    frame = pd.DataFrame({
        "txn": np.arange(len(tx), dtype=np.int64) * 7 + 1_000_000,  # the input's own id column, integers
        "timestamp": pd.to_datetime(tx["timestamp"], utc=True).dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "customer_id": tx["customer_id"], "terminal_id": tx["terminal_id"],
        "amount": tx["amount"], "label": tx["label"],
    })
    path = tmp_path / "tx.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in frame.to_dict("records")) + "\n")
    settings = settings_for(features={"fields": {"transaction_id": "txn"}})
    result, pipeline = run_replay(settings, path, label_delay="3d")

    since = float(result.times.min() + 6 * DAY)
    report = write_report(result, tmp_path / "out", since=since)
    assert report["overall"]["transactions"] == int((result.times >= since).sum()) < len(result.times)
    assert report["daily"][0]["day"] == str(np.datetime64(int(since), "s").astype("datetime64[D]"))
    written = pd.read_csv(tmp_path / "out" / "scores.csv")
    assert list(written.columns) == ["txn", "score", "model_version"]
    assert written["txn"].dtype == np.int64 and set(written["txn"]) == set(frame["txn"])
    assert result.scores["txn"].dtype == np.int64
    left = result.counters["rows_not_learned_partial_minibatch"]
    assert 0 <= left < settings.training.minibatch_size
    assert pipeline.trainer.rows_learned + left == result.counters["labels_joined"]


def test_replay_command_from_a_date_writes_scores_as_it_goes_and_reports_its_window(stream, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(f"replay:\n  chunk_rows: {CHUNK_ROWS}\n")
    out = tmp_path / "out"
    args = ["replay", "--data", str(stream), "--out", str(out), "--config", str(config), "--label-delay", "7d",
            "--from", "2026-04-13", "--report-from", "2026-04-20T00:00:00Z"]
    run = CliRunner().invoke(app, args)
    assert run.exit_code == 0, run.output
    frame = pd.read_json(stream, lines=True, dtype=False)
    stamps = pd.to_datetime(frame["timestamp"], utc=True)
    scores = pd.read_csv(out / "scores.csv")
    assert set(scores["transaction_id"]) == set(frame.loc[stamps >= pd.Timestamp("2026-04-13", tz="UTC"), "transaction_id"])
    report = json.loads((out / "report.json").read_text())
    assert report["report_from"] == "2026-04-20T00:00:00.000Z"
    assert report["overall"]["transactions"] == int((stamps >= pd.Timestamp("2026-04-20", tz="UTC")).sum())
    assert "rows not learned at the end (a part-filled mini-batch)" in run.output

    bad = CliRunner().invoke(app, args[:-4] + ["--from", "April"])
    assert bad.exit_code == 2 and "--from" in bad.output


def test_learning_beside_the_features_scores_as_inline_learning_does(stream, monkeypatch):
    settings = settings_for()
    beside, pipeline = run_replay(settings, stream, label_delay="7d")
    assert pipeline.background is None  # its learning thread is stopped at the end
    monkeypatch.setattr(Engine, "learn_in_background", lambda self, exact=False: None)
    inline, _ = run_replay(settings, stream, label_delay="7d")
    assert beside.counters["train_steps"] == inline.counters["train_steps"] > 50
    pd.testing.assert_frame_equal(beside.scores, inline.scores)  # scores and the version that made each
    np.testing.assert_array_equal(beside.scored, inline.scored)


def test_customer_codes_rank_card_precision_as_the_ids_do():
    rng = np.random.default_rng(0)
    ids = np.array([f"C{n:05d}" for n in rng.permutation(400)])[rng.integers(0, 400, 5_000)]
    scores = rng.integers(0, 4, 5_000) / 4.0  # many ties, broken by customer id
    labels = (rng.random(5_000) < 0.2).astype(np.int8)
    days = rng.integers(0, 5, 5_000)
    codes = _Codes()
    coded = codes.in_id_order(np.concatenate([codes.many(ids[:2_000]), codes.many(ids[2_000:])]))
    by_id = card_precision_per_day(labels, scores, ids, days, k=20)
    by_code = card_precision_per_day(labels, scores, coded, days, k=20)
    assert np.array_equal(by_code.per_day, by_id.per_day) and len(np.unique(coded)) == len(np.unique(ids))
    shuffled = card_precision_per_day(labels, scores, rng.permutation(400)[coded], days, k=20)
    assert not np.array_equal(shuffled.per_day, by_id.per_day)  # so another numbering would be seen
