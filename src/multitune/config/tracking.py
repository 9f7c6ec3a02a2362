"""`mlflow:` and `registry:` — where runs are tracked and the model is registered."""

from __future__ import annotations

from pydantic import Field

from multitune.config._base import StrictModel


class MlflowConfig(StrictModel):
    """The MLflow tracking store. Credentials come from MLFLOW_TRACKING_USERNAME/PASSWORD."""

    tracking_uri: str = Field(
        default="sqlite:///mlflow.db",
        description="sqlite:///<file> (relative to the project root) or http(s)://<server>.",
    )
    experiment: str = Field(default="multitune", min_length=1, description="Experiment name.")


class RegistryConfig(StrictModel):
    """The MLflow model registry entry the final stage writes."""

    model_name: str = Field(default="multitune", min_length=1, description="Registered model.")
    alias: str = Field(
        default="champion", min_length=1, description="Alias that moves to a better version."
    )
    allow_hurts: bool = Field(
        default=False,
        description="Let a version whose overall verdict is 'hurts' take the alias when it "
        "beats the holder on validation Δm (off: such a version is registered as a "
        "challenger only).",
    )
