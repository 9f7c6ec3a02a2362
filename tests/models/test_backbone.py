"""The text backbone: cached token states, top layers fine-tuned from them, served on raw text.

One module-scoped project: the synthetic table through ingest, split and embed with the bundled
all-MiniLM-L6-v2 caching the states that enter its top 2 layers.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from mlflow.pyfunc import PythonModelContext
from safetensors.torch import load_file
from synthetic import run_data_stages, synthetic_params, write_synthetic

from multitune.config import Params, validate_params
from multitune.config.tasks import TokenClassificationTask
from multitune.data import load_features, read_dataset, read_meta, read_tasks
from multitune.embed import load_encoder
from multitune.embed.token_cache import STATES, TokenCache, cache_dir
from multitune.errors import ConfigError
from multitune.models.backbone import TextLayers
from multitune.models.heads import TaskSpec
from multitune.models.multitask import MultiTaskModel
from multitune.training import TrainingData, load_model, predict, train
from multitune.training.tokens import PackedTokens

CACHED = 2


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("backbone")
    raw = synthetic_params(write_synthetic(root / "input"))
    raw["data"]["modalities"]["text"]["encoder"] = {
        "name": "sentence_transformer",
        "backend": "torch",
        "batch_size": 32,
        "cache_top_layers": CACHED,
    }
    raw["tasks"] = [t for t in raw["tasks"] if t["name"] in ("sentiment", "topic")]
    raw["model"] = {"encoder": {"hidden": 16, "dropout": 0.0}, "sharing": {"hidden": [16]}}
    raw["train"] = {
        "epochs": 2,
        "epoch_steps": None,
        "batch_size": 32,
        "seed": 0,
        "device": "cpu",
        "patience": 5,
    }
    run_data_stages(validate_params(raw), root / "data")
    return root / "data", raw


def _params(raw: dict[str, Any], backbone: dict[str, Any], **train: Any) -> Params:
    return validate_params(
        raw | {"model": raw["model"] | {"backbone": backbone}, "train": raw["train"] | train}
    )


def test_cache_holds_float16_states_of_every_token_and_meta_reports_its_size(
    project: tuple[Path, dict[str, Any]], st_model: Any
) -> None:
    data_dir, _ = project
    features = data_dir / "features"
    entry = read_meta(features)["text"]["token_cache"]
    cache = TokenCache.read(cache_dir(features, "text"))
    assert entry["layers"] == CACHED and entry["dtype"] == "float16"
    assert cache.states.dtype == np.float16 and cache.states.shape == (entry["tokens"], 384)
    assert entry["bytes"] >= (cache_dir(features, "text") / STATES).stat().st_size
    dataset = read_dataset(data_dir / "dataset.parquet").set_index("id")
    texts = dataset.loc[cache.ids, "text"].tolist()
    lengths = [len(ids) for ids in st_model.tokenizer(texts)["input_ids"]]
    np.testing.assert_array_equal(np.diff(cache.offsets), lengths)  # one state per token


def test_the_cache_in_its_own_order_is_mapped_not_read(
    project: tuple[Path, dict[str, Any]],
) -> None:
    data_dir, _ = project
    cache = TokenCache.read(cache_dir(data_dir / "features", "text"))
    states, offsets, _ = cache.aligned(cache.ids)
    assert isinstance(states, np.memmap)  # the file itself: pages load as batches touch them
    reordered, new_offsets, _ = cache.aligned(cache.ids[::-1])  # packed anew, in memory
    assert not isinstance(reordered, np.memmap)
    last = states[offsets[-2] : offsets[-1]]
    np.testing.assert_array_equal(reordered[new_offsets[0] : new_offsets[1]], last)


@pytest.mark.parametrize("trained", [1, CACHED])
def test_untrained_top_layers_give_the_frozen_encoder_vectors(
    project: tuple[Path, dict[str, Any]], trained: int
) -> None:
    data_dir, _ = project
    cache = TokenCache.read(cache_dir(data_dir / "features", "text"))
    layers = TextLayers(cache.info, trained)
    layers.load_pretrained(cache.info["model"])
    states, offsets, _ = cache.aligned(cache.ids)
    tokens = PackedTokens.from_arrays(states, offsets)
    with torch.no_grad():
        pooled = layers.eval()(*tokens.padded()).numpy()
    frozen = load_features(data_dir / "features", "text", cache.ids)
    np.testing.assert_allclose(pooled, frozen, atol=1e-4)


def test_top_k_trains_its_top_layers_and_leaves_the_ones_below(
    project: tuple[Path, dict[str, Any]],
) -> None:
    data_dir, raw = project
    params = _params(raw, {"name": "top_k", "layers": 1}, epochs=8, lr=3e-3)
    data = TrainingData.from_files(data_dir, params, "cpu")
    result = train(params, data)
    pretrained = TextLayers(data.token_caches["text"], 1)
    pretrained.load_pretrained(data.token_caches["text"]["model"])
    before = pretrained.state_dict()
    after = result.model.backbone["text"].state_dict()
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved and all(k.startswith("top.") for k in moved)
    assert any(k.startswith("below.") for k in before)  # the frozen layer is there, unmoved
    assert result.metrics["test"]["topic"]["accuracy"] > 0.6  # 3 classes: well above chance


def test_gradual_unfreezing_keeps_the_layers_frozen_for_its_epochs(
    project: tuple[Path, dict[str, Any]],
) -> None:
    data_dir, raw = project
    params = _params(raw, {"name": "top_k", "layers": 2, "unfreeze_after": 2}, epochs=2)
    result = train(params, TrainingData.from_files(data_dir, params, "cpu"))
    layers = TextLayers(result.model.token_caches["text"], 2)
    layers.load_pretrained(result.model.token_caches["text"]["model"])
    for k, v in layers.state_dict().items():  # two epochs, both before unfreezing
        assert torch.equal(v, result.model.backbone["text"].state_dict()[k]), k


def test_saved_model_and_served_raw_text_agree_with_training(
    project: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    from multitune.tracking.pyfunc import build_spec, stage_artifacts
    from multitune.tracking.pyfunc_model import MultituneModel

    data_dir, raw = project
    params = _params(raw, {"name": "top_k", "layers": 2})
    data = TrainingData.from_files(data_dir, params, "cpu")
    result = train(params, data)
    result.save(tmp_path / "model")
    assert any(
        k.startswith("backbone.text.top.")
        for k in load_file(tmp_path / "model" / "model.safetensors")
    )
    test = data.splits["test"]
    in_process = predict(result.model, data.inputs(test, ["text"]))
    reloaded = predict(load_model(tmp_path / "model"), data.inputs(test, ["text"]))
    for task, values in in_process.items():
        np.testing.assert_allclose(reloaded[task], values, atol=1e-6)

    spec = build_spec(params, read_tasks(data_dir / "tasks.json"))
    artifacts = stage_artifacts(
        tmp_path / "staging", tmp_path / "model", data_dir / "features", spec
    )
    served = MultituneModel()
    served.load_context(PythonModelContext(artifacts=artifacts, model_config={}))
    rows = read_dataset(data_dir / "dataset.parquet").set_index("id").loc[data.ids[test.numpy()]]
    out = served.predict(None, rows.reset_index())
    proba = np.stack(out["topic_proba"].to_numpy())
    # Served from raw text in float32; trained on the float16 cache: equal to ~1e-4.
    np.testing.assert_allclose(proba, in_process["topic"], atol=2e-3)


def test_top_k_without_a_cache_or_beyond_it_says_what_to_set(
    project: tuple[Path, dict[str, Any]], synthetic_data: tuple[Path, Any]
) -> None:
    # Refused when params are validated, before any stage reads data.
    _, base = synthetic_data
    raw = base.model_dump(mode="json")
    raw["model"]["backbone"] = {"name": "top_k", "layers": 1}
    with pytest.raises(ConfigError, match=r"model\.backbone: .*cache_top_layers: 1"):
        validate_params(raw)

    _, raw_cached = project
    with pytest.raises(ConfigError, match=f"cache_top_layers is {CACHED}"):
        _params(raw_cached, {"name": "top_k", "layers": CACHED + 1})


def test_the_cache_holds_the_final_token_states_beside_the_states_entering_the_layers(
    project: tuple[Path, dict[str, Any]], st_model: Any
) -> None:
    data_dir, _ = project
    features = data_dir / "features"
    cache = TokenCache.read(cache_dir(features, "text"))
    assert cache.final is not None and cache.final.dtype == np.float16
    assert cache.final.shape == cache.states.shape
    rows = np.arange(0, len(cache.ids), 25)
    texts = read_dataset(data_dir / "dataset.parquet").set_index("id").loc[cache.ids[rows], "text"]
    # The model's own token embeddings and sentence vectors, text by text.
    tokens = st_model.encode(texts.tolist(), output_value="token_embeddings")
    vectors = st_model.encode(texts.tolist())
    for i, row in enumerate(rows):
        final = cache.final[cache.offsets[row] : cache.offsets[row + 1]]
        np.testing.assert_allclose(final, tokens[i].numpy(), rtol=2**-10, atol=2**-14)
    stored = load_features(features, "text", cache.ids[rows])
    np.testing.assert_allclose(stored, vectors, atol=1e-5)


def test_a_frozen_backbone_reads_the_final_states_and_predicts_as_running_its_layers(
    project: tuple[Path, dict[str, Any]],
) -> None:
    """A token task (and a sentence task, through the pooled vector) over a frozen backbone:
    read from the cached final states (a step's path now), from the cached layers run again
    on the cached states (the path before them), and from raw text in float32 (the served
    model's path): the same predictions, within the float16 cache's rounding."""
    data_dir, raw = project
    params = _params(raw, {"name": "frozen"})
    data = TrainingData.from_files(data_dir, params, "cpu")
    words = TaskSpec(TokenClassificationTask(name="words", column="words"), ["B", "I", "O"])
    torch.manual_seed(0)
    model = MultiTaskModel(
        params.model, data.modality_dims, [*data.tasks, words], data.token_caches
    )
    layers = model.backbone["text"]
    layers.load_pretrained(data.token_caches["text"]["model"])
    calls = []
    layers._layers = lambda *a: calls.append(1) or TextLayers._layers(layers, *a)  # counted

    rows = data.splits["test"]
    new = predict(model, data.inputs(rows, ["text"]))
    assert not calls  # nothing ran: the states were read
    cached = data.tokens["text"][rows]
    before = predict(model, data.inputs(rows) | {"text": replace(cached, final=None)})
    assert calls
    frame = read_dataset(data_dir / "dataset.parquet").set_index("id").loc[data.ids[rows.numpy()]]
    encoder = load_encoder(data_dir / "features", "text", params.data.modalities["text"])
    got = encoder.token_states(frame[["text"]], data.token_caches["text"]["layers"])
    served = predict(
        model, data.inputs(rows) | {"text": PackedTokens.from_arrays(got.states, got.offsets)}
    )
    lengths = cached.lengths
    real = np.arange(new["words"].shape[1])[None, :] < lengths[:, None]  # not the padding
    for other in (before, served):
        np.testing.assert_allclose(new["topic"], other["topic"], atol=1e-4)
        np.testing.assert_allclose(new["words"][real], other["words"][real], atol=1e-3)
        agree = (new["words"].argmax(-1) == other["words"].argmax(-1))[real].mean()
        assert agree > 0.99
