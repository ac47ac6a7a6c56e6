"""A transaction whose huge amount overflows a derived float32 feature to inf is scored by inplace_predict;
its reasons (a DMatrix, which refuses inf) must neither crash the worker nor disagree with the score."""
from __future__ import annotations

import numpy as np
import orjson
from prometheus_client import CollectorRegistry

from breeboost.settings import Settings
from models.explain import Explainer
from models.scorer import Scorer
from streams.metrics import WorkerMetrics
from streams.records import Msg
from streams.stages import WorkerStages


def test_reasons_of_an_overflowing_transaction(paysim_model):
    scorer = Scorer.load(paysim_model)
    tx = {"transaction_id": "huge", "step": 1, "type": "TRANSFER", "amount": 1e300, "oldbalanceOrg": 0.0,
          "newbalanceOrig": 0.0, "oldbalanceDest": 0.0, "newbalanceDest": 0.0, "event_time": 1.0}
    stages = WorkerStages.build(scorer, Settings.from_env({}, partitions=1, reasons="all"),
                                WorkerMetrics(CollectorRegistry()))
    out = stages.scoring.process([Msg("transactions", 0, 0, orjson.dumps(tx))])
    [score] = [orjson.loads(v) for _, v in out.scores]
    assert not out.dead_letters and score["reasons"]
    from models.features import compute_features
    from models.validation import validate_records

    feats = compute_features(validate_records([tx], scorer.spec).columns, scorer.spec)
    assert not np.isfinite(feats.matrix()).all()          # the case: an inf reaches the model input
    contribs = Explainer.of(scorer).contributions(feats.matrix())
    logit = float(contribs[0].sum())
    assert abs(1 / (1 + np.exp(-logit)) - score["fraud_probability"]) < 1e-4   # the same trees, the same paths
