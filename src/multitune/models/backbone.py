"""The text backbone: frozen, or its top layers fine-tuned from cached token states.

`frozen` (the default) feeds a text modality's pooled vectors from the embed stage, as they
are. `top_k` runs the pretrained transformer's top layers on the token states the embed stage
cached (`multitune.embed.token_cache`), trains the top `layers` of them, and pools the result
as the sentence-transformers model pools (mean over tokens, then L2 normalization where the
model normalizes). Only those layers run per step: the rest of the transformer ran once, in
the embed stage. Untrained, `top_k` reproduces the frozen vectors (up to the float16 cache).

This is the "freeze all but the top layers" recipe of Howard & Ruder (2018, "Universal
Language Model Fine-tuning", sec. 3.2-3.3), with gradual unfreezing via `unfreeze_after`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Protocol, Union

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from multitune.registry import MethodConfig


class FrozenConfig(MethodConfig):
    """The text encoder stays frozen: its pooled vectors are the modality's input."""

    name: Literal["frozen"] = "frozen"


class TopKConfig(MethodConfig):
    """Fine-tune the top layers of the text encoder, run on cached token states."""

    name: Literal["top_k"] = "top_k"
    layers: int = Field(
        default=1,
        ge=1,
        le=48,
        description="Top transformer layers to train; at most the modality's "
        "`cache_top_layers` (the cached layers below them run frozen).",
    )
    unfreeze_after: int = Field(
        default=0,
        ge=0,
        description="Epochs the layers stay frozen before they train (gradual unfreezing); "
        "0 trains them from the start. Their learning rate: train.freezing.lr_multipliers."
        "backbone.",
    )
    modalities: list[str] | None = Field(
        default=None,
        min_length=1,
        description="Text modalities to fine-tune; null: every modality with cached token states.",
    )


BackboneConfig = Annotated[Union[FrozenConfig, TopKConfig], Field(discriminator="name")]  # noqa: UP007


class TokenInput(Protocol):
    """A batch of token states (`multitune.training.tokens.PackedTokens`)."""

    def padded(self) -> tuple[Tensor, Tensor]:
        """`(states (B, T, H) float32, mask (B, T) bool)`."""
        ...


class TextLayers(nn.Module):
    """The top `cached` layers of a transformer; the highest `trained` of them train.

    Input: token states `(B, T, H)` entering the first cached layer and their mask `(B, T)`.
    Output: the pooled sentence vector `(B, H)`.

    Args:
        info: the token cache's description (`transformer_config`, `layers`, `normalize`).
        trained: how many of the top layers train; the `layers - trained` below run frozen,
            always in eval mode (0: all frozen, for token tasks over a frozen encoder).
    """

    def __init__(self, info: dict[str, Any], trained: int) -> None:
        super().__init__()
        from transformers import AutoConfig, AutoModel

        cached = int(info["layers"])
        if not 0 <= trained <= cached:
            raise ValueError(
                f"model.backbone.layers is {trained}, but only {cached} layer(s) are cached "
                "(raise the modality's encoder.cache_top_layers and rerun `dvc repro embed`)"
            )
        raw = dict(info["transformer_config"]) | {"num_hidden_layers": cached}  # only these
        config = AutoConfig.for_model(raw.pop("model_type"), **raw)
        with torch.random.fork_rng(devices=[]):  # placeholders: weights are loaded over
            layers = list(AutoModel.from_config(config).encoder.layer)  # them; the run's
            # random stream (the trunk's init, dropout) stays as without a backbone
        self.config = config
        self.cached, self.trained = cached, trained
        self.normalize = bool(info.get("normalize", False))
        self.below = nn.ModuleList(layers[: cached - trained])
        self.top = nn.ModuleList(layers[cached - trained :])
        self.out_dim = int(config.hidden_size)
        self.chunk_rows = 8

    def load_pretrained(self, model_dir: str) -> None:
        """Copy the pretrained weights of these layers from a Hugging Face model directory."""
        from transformers import AutoModel

        source = list(AutoModel.from_pretrained(model_dir).encoder.layer)[-self.cached :]
        for own, pretrained in zip([*self.below, *self.top], source, strict=True):
            own.load_state_dict(pretrained.state_dict())

    def frozen_names(self, prefix: str) -> set[str]:
        """Parameter names (under `prefix`) that never train: the layers below the top."""
        return {f"{prefix}below.{n}" for n, _ in self.below.named_parameters()}

    def train(self, mode: bool = True) -> TextLayers:
        """Train mode for the top layers only; the frozen ones keep dropout off."""
        super().train(mode)
        self.below.eval()
        return self

    def forward(self, states: Tensor, mask: Tensor) -> Tensor:
        """Pooled `(B, H)` sentence vectors from `(B, T, H)` states and a `(B, T)` mask."""
        return self.encode(states, mask)[1]

    def encode(self, states: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """`(token states (B, T, H) after the top layer, pooled (B, H))`.

        Rows run in groups of `chunk_rows` of similar length, each padded only to its own
        longest row: one long row no longer makes the whole batch pay for its padding.
        Padding is masked out of attention and pooling, so grouping does not change results.
        """
        lengths = mask.sum(1)
        order = torch.argsort(lengths)
        h = torch.zeros_like(states)
        for group in order.split(self.chunk_rows):
            width = max(int(lengths[group].max()), 1)
            h[group, :width] = self._layers(states[group, :width], mask[group, :width])
        weights = mask.unsqueeze(-1).to(h.dtype)
        pooled = (h * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
        return h, F.normalize(pooled, p=2, dim=1) if self.normalize else pooled

    def _layers(self, states: Tensor, mask: Tensor) -> Tensor:
        from transformers.masking_utils import create_bidirectional_mask

        attention = create_bidirectional_mask(
            config=self.config, inputs_embeds=states, attention_mask=mask.long()
        )
        h = states
        if len(self.below):
            with torch.no_grad():
                for layer in self.below:
                    h = layer(h, attention_mask=attention)
        for layer in self.top:
            h = layer(h, attention_mask=attention)
        return h
