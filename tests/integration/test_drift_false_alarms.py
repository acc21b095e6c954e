"""No drift, no cry: a backtest of a stationary stream raises at most one alarm per detector.

The scenario is in ``alarm_scenario.py``, with the default config: 1,000 simulated customers
(2,000 terminals) for 180 days and no drift; ``train`` on the first 60 days; ``replay`` of
all 180 days through the artifact, labels 7 days late, with the daemon's monitor. No broker.
Seeded, so the figures are the same on every run. About 2 minutes on 2 busy cores (simulate
and train about 50 s, replay of 710,000 events about 60 s).

Before the detectors judged the data rather than the model learning, this replay raised 25
alarms: PSI 12 (all in the first 31 days, windows filling), Page-Hinkley 9 (as the model
learned) and ADWIN 4. That detection still works is shown on drifts by
``bench/bench_drift_alarms.py`` (delays in the README) and by ``test_drift_detection.py``.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from alarm_scenario import DETECTORS, AlarmScenario, prepare, replay_with_alarms  # noqa: E402

pytestmark = pytest.mark.slow

SCENARIO = AlarmScenario(customers=1_000, days=180, train_days=60, seed=0)


@pytest.fixture(scope="module")
def alarms(tmp_path_factory):
    return replay_with_alarms(prepare(SCENARIO, tmp_path_factory.mktemp("alarms")))


def test_the_detectors_wait_for_the_feature_windows(alarms):
    # 30-day terminal fraud-rate windows whose labels come 7 days late: full from day 37
    assert alarms.warm_from_day == pytest.approx(37.0, abs=0.01)
    assert [d["day"] for d in alarms.detections if d["detector"] == "psi" and d["day"] < 37.0] == []


def test_a_stationary_stream_raises_at_most_one_alarm_per_detector_after_the_warm_up(alarms):
    result = alarms.result
    assert result.counters["labels_joined"] > 300_000  # every detector saw the whole stream
    assert result.counters["train_steps"] > 4_000  # and the model kept learning throughout
    after = {d: [round(x, 1) for x in alarms.days_of(d) if x >= alarms.warm_from_day] for d in DETECTORS}
    during = {d: [round(x, 1) for x in alarms.days_of(d) if x < alarms.warm_from_day] for d in DETECTORS}
    print(f"alarms after the warm-up (event day): {after}; during it: {during}")
    assert all(len(days) <= 1 for days in after.values()), after
