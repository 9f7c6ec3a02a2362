"""ONNX Runtime for the transformer of a sentence-transformers model.

The model's first module (the Hugging Face transformer) is exported once to ONNX and cached
by a hash of its weights; ONNX Runtime then computes token embeddings with fused kernels
(attention, GELU, layer norm) that PyTorch's eager mode does not use, and the model's own
later modules (pooling, normalization, ...) finish on those token embeddings, so the vectors
match `SentenceTransformer.encode` (checked on probe sentences before use).
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from multitune.embed._batches import finish, torch_tokens
from multitune.io import atomic_path

if TYPE_CHECKING:  # for annotations only: both load when a text model runs
    import onnxruntime
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)
DEFAULT_CACHE = Path("data/.cache/onnx")
OPSET = 17
PROBES = ["A short one.", "A somewhat longer probe sentence, with a comma and more words " * 3]
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _model_key(model: SentenceTransformer) -> str:
    """A hash of the transformer's weights and config: the cache key of its export."""
    import torch  # loaded already, with the model: importing this module does not load it

    digest = hashlib.blake2b(digest_size=12)
    digest.update(f"{torch.__version__}|{OPSET}".encode())
    for name, tensor in model[0].state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _export(model: SentenceTransformer, target: Path) -> None:
    import torch  # loaded already, with the model: importing this module does not load it

    auto = cast(torch.nn.Module, model[0].auto_model)
    features = model.preprocess(PROBES)
    names = [k for k in INPUTS if k in features]

    class _Tokens(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.auto = auto

        def forward(self, *args: torch.Tensor) -> torch.Tensor:
            return self.auto(**dict(zip(names, args, strict=True))).last_hidden_state

    axes = {k: {0: "batch", 1: "tokens"} for k in [*names, "token_embeddings"]}
    with atomic_path(target) as tmp, warnings.catch_warnings(), torch.inference_mode(False):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Tokens().eval(),
            tuple(features[k] for k in names),
            str(tmp),
            input_names=names,
            output_names=["token_embeddings"],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )


class OnnxTokens:
    """Token embeddings of a sentence-transformers model's transformer, by ONNX Runtime."""

    def __init__(self, session: onnxruntime.InferenceSession) -> None:
        self.session = session
        self.inputs = [i.name for i in session.get_inputs()]

    def __call__(self, features: dict[str, Any]) -> np.ndarray:
        """`features` from `model.preprocess` -> `(batch, tokens, hidden)` float32."""
        feeds = {k: features[k].numpy() for k in self.inputs}
        return self.session.run(None, feeds)[0]  # type: ignore[no-any-return]


def onnx_tokens(model: SentenceTransformer, cache: Path = DEFAULT_CACHE) -> OnnxTokens | None:
    """An ONNX Runtime runner for `model`'s transformer, or None where that cannot work.

    None when onnxruntime/onnx are missing, the first module is not a plain transformer,
    the export fails, or the probe vectors differ from PyTorch's by more than 1e-5.
    """
    try:
        import onnxruntime as ort  # optional: without it, PyTorch runs the model
    except ImportError:
        log.warning("onnxruntime is not installed; text is embedded with PyTorch")
        return None
    if not hasattr(model[0], "auto_model") or str(model.device) != "cpu":
        return None
    path = cache / f"{_model_key(model)}.onnx"
    try:
        if not path.exists():
            log.info("exporting the text model to ONNX: %s", path)
            _export(model, path)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        runner = OnnxTokens(
            ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        )
    except Exception as err:  # any export or runtime failure means "use torch"
        log.warning("ONNX export of the text model failed (%s); using PyTorch", err)
        return None
    features = model.preprocess(PROBES)
    ours = finish(model, runner(features), features)
    reference = finish(model, torch_tokens(model, features), features)
    if np.abs(ours - reference).max() > 1e-5:
        log.warning("ONNX vectors differ from PyTorch's on probe sentences; using PyTorch")
        return None
    return runner
