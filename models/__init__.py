"""Feature spec, shared feature engineering, XGBoost training/evaluation, the model artifact and scorer.

Modules: :mod:`models.spec` (the TOML feature spec), :mod:`models.features` (one feature code path for
training and serving), :mod:`models.validation` (per-record checks before scoring),
:mod:`models.io` (CSV/JSONL/Parquet tables), :mod:`models.training`, :mod:`models.evaluation`,
:mod:`models.artifact` (the model directory) and :mod:`models.scorer` (serving). Only the light modules
are imported here; ``training`` and ``scorer`` import XGBoost and are imported explicitly.
"""
from models.errors import DataError, ModelError, SpecError
from models.spec import FeatureSpec, load_spec

__all__ = ["DataError", "ModelError", "SpecError", "FeatureSpec", "load_spec"]
