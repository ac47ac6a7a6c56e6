"""models/ on simulator data: the AUPRC target on a time split, single record == batch, CLI without --data."""
from __future__ import annotations

import json

import numpy as np
import pytest

from breeboost.cli import main
from breeboost.commands.train import simulated_rows
from models.features import features_for_record
from models.scorer import Scorer
from models.spec import load_spec
from models.training import TrainConfig, train_model
from models.validation import validate_records

SEED = 7
ROWS = 500_000


@pytest.fixture(scope="module")
def sim_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("sim-model")
    model = train_model(simulated_rows(ROWS, SEED), load_spec(), TrainConfig(seed=SEED))
    model.save(d)
    return d, model


def test_time_split_test_auprc_reaches_target(sim_model):
    _, model = sim_model
    training = model.metadata["training"]
    assert training["split"] == "time" and training["ordered_by"] == "event_time"
    slices = training["slices"]
    assert slices["train"]["event_time_max"] <= slices["validation"]["event_time_min"]
    assert slices["validation"]["event_time_max"] <= slices["test"]["event_time_min"]
    print("test report:", json.dumps({k: model.report[k] for k in ("rows", "positives", "auprc", "roc_auc")}))
    assert model.report["positives"] >= 50
    assert model.report["auprc"] >= 0.99


def test_single_record_equals_batch_on_10k_simulator_records(sim_model):
    d, _ = sim_model
    scorer = Scorer.load(d)
    cols = simulated_rows(10_000, SEED + 100)
    records = [dict(zip(cols, row)) for row in zip(*(v.tolist() for v in cols.values()))]
    for r in records:
        del r["isFraud"]
    out = scorer.score_records(records)
    assert out.validated.accepted.size == 10_000
    m = out.scored.features.matrix()
    single = np.stack([features_for_record(r, scorer.spec).matrix()[0] for r in records])
    assert np.array_equal(single, m)
    probs = np.array([scorer.score_record(r)[0] for r in records], dtype=np.float32)
    assert np.array_equal(probs, out.scored.probability)
    # the validated columns are what the stream layer scores: same probabilities again
    v = validate_records(records, scorer.spec)
    assert np.array_equal(scorer.score_columns(v.columns).probability, out.scored.probability)


def test_train_without_data_uses_the_simulator(tmp_path, capsys):
    assert main(["train", "--rows", "100000", "--seed", "3", "--out", str(tmp_path / "m"), "--n-estimators", "40"]) == 0
    out = capsys.readouterr().out
    assert "generated 100000 simulator rows" in out and "wrote" in out
    assert Scorer.load(tmp_path / "m").metadata["training"]["source"].startswith("simulator(")
