"""The served model's class: raw input rows -> the embed stage's encoders -> each group's
model -> every task's label and class probabilities.

`served_model.py` names `MultituneModel` for MLflow (models-from-code); `load_context` reads
the artifacts `multitune.tracking.pyfunc` stages (the model's contents are described there),
and `predict` answers as `multitune.tracking.pyfunc_output` describes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel, PythonModelContext

from multitune.config.data import ModalityConfig
from multitune.embed import load_encoder
from multitune.errors import UserError
from multitune.tracking.pyfunc_members import Encoded, Member, NetworkMember, load_members
from multitune.tracking.pyfunc_output import (
    TaskSpec,
    TokenWords,
    format_predictions,
    selected_tasks,
    single_task_view,
)

ARTIFACT_MODEL, ARTIFACT_FEATURES, ARTIFACT_SPEC = "network", "features", "spec"
TEXT_ENCODER, BUNDLED_MODEL = "sentence_transformer", "model"


class MultituneModel(PythonModel):
    """Raw rows -> encoders of the embed stage -> each group's model -> per-task outputs."""

    def load_context(self, context: PythonModelContext) -> None:
        """Load the spec, the fitted encoders and the network(s) from the model's artifacts.

        `network` is the model's only network, if it has one (None for a bundle of several
        or of linear models only); `members` are its groups (one for a single network).
        """
        import torch  # torch: loaded with a model, not with `multitune.tracking`

        spec = json.loads(Path(context.artifacts[ARTIFACT_SPEC]).read_text())
        features = Path(context.artifacts[ARTIFACT_FEATURES])
        self.tasks = [TaskSpec(**t) for t in spec["tasks"]]
        self.encoders = {
            name: (
                load_encoder(features, name, _modality_config(features, name, m["config"])),
                list(m["columns"]),
            )
            for name, m in spec["modalities"].items()
        }
        self.device = torch.device("cpu")
        self.members = load_members(Path(context.artifacts[ARTIFACT_MODEL]), self.tasks)
        networks = [m.network for m in self.members if isinstance(m, NetworkMember)]
        for network in networks:
            network.to(self.device).eval()
        self.network = networks[0] if len(networks) == 1 else None

    def encode(self, frame: pd.DataFrame, members: Sequence[Member] | None = None) -> Encoded:
        """What `members` (all when None) read of the raw rows in `frame`, each modality
        encoded once: the embed stage's vectors for whoever reads vectors (linear members
        always do), the token states a network's text backbone reads, and for those
        modalities each token's word (for token tasks)."""
        from multitune.training.tokens import PackedTokens  # with torch (see load_context)

        needs = [m.needs() for m in (self.members if members is None else members)]
        vectors = set().union(*(n.vectors for n in needs))
        tokens = set().union(*(n.tokens for n in needs))
        used = vectors | {m for m, _ in tokens}
        missing = [c for name in used for c in self.encoders[name][1] if c not in frame]
        if missing:
            raise UserError(f"input lacks column(s) {', '.join(sorted(set(missing)))}")
        out = Encoded()
        for name, (enc, cols) in self.encoders.items():
            if name in vectors:
                out.vectors[name] = enc.transform(frame[cols])
        for name, layers in sorted(tokens):
            enc, cols = self.encoders[name]
            got = enc.token_states(frame[cols], layers)  # type: ignore[attr-defined]
            out.tokens[(name, layers)] = PackedTokens.from_arrays(
                got.states, got.offsets, self.device, segments=got.segments
            )
            out.words.setdefault(name, (got.words, got.offsets, got.counts))
        return out

    def predict(
        self,
        context: PythonModelContext | None,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        """Predict every (or the asked) task for raw rows; see `pyfunc_output`'s docstring."""
        import torch  # torch: loaded with a model, not with `multitune.tracking`

        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        names = [t.name for t in self.tasks]
        wanted, single = selected_tasks(params, names)
        if frame.empty:
            return pd.DataFrame(columns=wanted)
        members = [m for m in self.members if set(m.tasks) & set(wanted)]
        encoded = self.encode(frame.reset_index(drop=True), members)
        raw: dict[str, np.ndarray] = {}
        token_words: dict[str, TokenWords] = {}
        with torch.no_grad():
            for member in members:
                values, words = member.run(encoded, self.device)
                raw.update(values)
                token_words.update(words)
        out = format_predictions(raw, self.tasks, wanted, token_words)
        return single_task_view(out, single) if single else out


def _modality_config(features: Path, name: str, raw: dict[str, Any]) -> Any:
    """The modality's config; a bundled text model replaces the configured model path.

    The text model runs in PyTorch when served: an ONNX backend would export and cache a
    model under the server's working directory at load time (its vectors agree to ~1e-6).
    """
    if raw["encoder"]["name"] == TEXT_ENCODER:
        encoder = {**raw["encoder"]}
        if "backend" in encoder:
            encoder["backend"] = "torch"
        bundled = features / "encoders" / name / BUNDLED_MODEL
        if bundled.is_dir():
            encoder["model"] = str(bundled)
        raw = {**raw, "encoder": encoder}
    return ModalityConfig.model_validate(raw)


def load_local(artifacts: Mapping[str, str]) -> MultituneModel:
    """The served model, loaded in this process from staged artifacts (no MLflow store)."""
    model = MultituneModel()
    model.load_context(PythonModelContext(artifacts=dict(artifacts), model_config={}))
    return model
