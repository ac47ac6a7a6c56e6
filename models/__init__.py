"""Feature spec, shared feature engineering, XGBoost training/evaluation, the model artifact and scorer."""

__all__: list[str] = []
