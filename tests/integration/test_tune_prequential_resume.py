"""``tune --objective prequential`` SIGKILLed mid-search and started again keeps the
trials it finished (not rerun) and runs only the missing ones.

Cost: a 40-day simulation of 200 customers and four 1-epoch trials, each with a replay of
the 20 days after its training period (~1 min on 2 cores).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import yaml
from sigkill import kill_when

TRIALS = 4
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
CONFIG = {"model": {"split": {"train_days": 20, "delay_days": 7}, "tuning": {
    "objective": "prequential", "prequential_days": 7, "epochs": 1, "strategy": "random",
    "search_space": {"n_layers": [1, 2], "batch_size": [256], "dropout": [0.0], "l1": [0.0], "l2": [0.0]},
    "online_space": {"minibatch_size": [32, 64], "replay_ratio": [0.5, 1.0]},
}}}


def completed(project):
    done = {}
    for path in sorted(project.glob("trial_*/trial.json")):
        trial = json.loads(path.read_text())
        if trial.get("status") == "COMPLETED":
            done[path] = path.read_bytes()
    return done


def test_a_killed_prequential_search_resumes_without_rerunning_finished_trials(tmp_path):
    events = tmp_path / "events.csv"
    subprocess.run([sys.executable, "-m", "fraudstream", "simulate", "--days", "40", "--customers", "200",
                    "--terminals", "400", "--seed", "2", "--out", str(events), "--inline-labels",
                    "--no-label-events", "--no-progress"], check=True, capture_output=True, env=ENV)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    out = tmp_path / "tune"
    args = [sys.executable, "-m", "fraudstream", "tune", "--data", str(events), "--out", str(out),
            "--config", str(config), "--max-trials", str(TRIALS)]
    project = out / "search" / "random-prequential"

    kill_when(args, lambda: bool(completed(project)), ENV)
    before = completed(project)
    assert 1 <= len(before) < TRIALS
    assert not (out / "leaderboard.csv").exists()

    rerun = subprocess.run(args, capture_output=True, text=True, env=ENV, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert f"resumed: {len(before)} trials were already complete, {TRIALS - len(before)} ran now" in rerun.stderr, [line for line in rerun.stderr.splitlines() if "resumed" in line or "Trial" in line]
    after = completed(project)
    assert len(after) == TRIALS
    for path, content in before.items():
        assert after[path] == content, f"{path.parent.name} was run again"
    rows = (out / "leaderboard.csv").read_text().splitlines()
    assert len(rows) == 1 + TRIALS and rows[0].startswith("rank,trial_id,status,prequential_ap")
