"""``train --init-from``: continue an artifact on new data, keep its features, record lineage."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from fraudstream.config import load_settings
from fraudstream.features import read_events
from fraudstream.models.artifact import load_artifact
from fraudstream.models.commands import with_model_overrides
from fraudstream.models.exceptions import ArtifactInvalid
from fraudstream.models.training import train_offline


@pytest.fixture(scope="module")
def months(tmp_path_factory):
    """Days 0-59 of a small simulation (the artifact's data) and days 45-89 (the new data),
    and an artifact trained on the first."""
    tmp = tmp_path_factory.mktemp("retrain")
    events = tmp / "events.csv"
    subprocess.run([sys.executable, "-m", "fraudstream", "simulate", "--days", "90", "--customers", "300",
                    "--terminals", "600", "--seed", "5", "--out", str(events), "--inline-labels",
                    "--no-label-events", "--no-progress"], check=True, capture_output=True)
    settings = load_settings()
    frame = read_events(events, settings.features.fields)
    ts = pd.to_datetime(frame["timestamp"], utc=True)
    day = (ts - ts.min().floor("D")) / pd.Timedelta(days=1)
    old, new = frame[day < 60].reset_index(drop=True), frame[day >= 45].reset_index(drop=True)
    train_offline(old, with_model_overrides(settings, epochs=5, **{"split.train_days": 40}), tmp / "v1")
    return tmp, settings, new


def test_init_from_starts_at_the_artifacts_level_not_from_scratch(months):
    tmp, settings, new = months
    one_epoch = with_model_overrides(settings, epochs=1, **{"split.train_days": 30})
    parent = load_artifact(tmp / "v1")
    continued = train_offline(new, one_epoch, tmp / "v2", init_from=tmp / "v1")
    scratch = train_offline(new, one_epoch, tmp / "scratch")
    start_ap = continued.initial_metrics["average_precision"]  # v1 on the new validation rows
    epoch1_ap = continued.metrics["average_precision"]
    scratch_ap = scratch.metrics["average_precision"]
    print(f"epoch-1 validation AP: v1 before training {start_ap:.4f}, continued {epoch1_ap:.4f}, "
          f"from scratch {scratch_ap:.4f}")
    assert epoch1_ap > start_ap - 0.05, "continuing lost what the artifact knew"
    assert epoch1_ap > scratch_ap + 0.05, "one epoch from the artifact should beat one from scratch"

    v2 = load_artifact(tmp / "v2")
    # weights and optimiser state continued: the step count goes on from v1's
    steps = lambda art: int(art.model.optimizer.iterations.numpy())  # noqa: E731
    assert steps(v2) == steps(parent) + int(np.ceil(continued.data["train_rows"] / parent.params.batch_size))
    # the feature spec and the fitted normaliser are v1's, not refitted on the new rows
    assert v2.feature_spec == parent.feature_spec
    np.testing.assert_array_equal(v2.feature_state["normalizer"]["mean"], parent.feature_state["normalizer"]["mean"])
    (lineage,) = v2.metadata["lineage"]
    assert lineage["model_version"] == parent.model_version and lineage["path"] == str(tmp / "v1")
    assert lineage["metrics_on_new_validation"]["average_precision"] == pytest.approx(start_ap)
    assert v2.metadata["data"]["initial_metrics"]["average_precision"] == pytest.approx(start_ap)
    assert v2.params.n_layers == parent.params.n_layers and v2.params.epochs == 1

    # a third generation carries the whole line
    train_offline(new, one_epoch, tmp / "v3", init_from=tmp / "v2")
    v3 = json.loads((tmp / "v3" / "metadata.json").read_text())
    assert [g["model_version"] for g in v3["lineage"]] == [parent.model_version, v2.model_version]


def test_init_from_refuses_another_feature_spec(months):
    tmp, settings, new = months
    changed = settings.model_copy(update={"features": settings.features.model_copy(
        update={"stateless": ("amount", "weekend"), "timezone": "Europe/Paris"})})
    with pytest.raises(ArtifactInvalid) as caught:
        train_offline(new, changed, tmp / "refused", init_from=tmp / "v1")
    message = str(caught.value)
    assert "\n" not in message and "feature spec differs" in message
    assert 'stateless (artifact null, config ["amount", "weekend"])' in message
    assert 'timezone (artifact "UTC", config "Europe/Paris")' in message
    assert not (tmp / "refused").exists()
