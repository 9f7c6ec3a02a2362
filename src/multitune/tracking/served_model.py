"""The code MLflow logs as the served model (models-from-code): it only names the class.

MLflow executes this file when the model is loaded; `MultituneModel.load_context` then reads
the model's artifacts. See `multitune.tracking.pyfunc`.
"""

from __future__ import annotations

from mlflow.models import set_model

from multitune.tracking.pyfunc_model import MultituneModel

set_model(MultituneModel())
