"""The text backbone: frozen, or its top layers fine-tuned from cached token states.

`frozen` (the default) feeds a text modality's pooled vectors from the embed stage, as they
are. `top_k` runs the pretrained transformer's top layers on the token states the embed stage
cached (`multitune.embed.token_cache`), trains the top `layers` of them, and pools the result
as the sentence-transformers model pools (mean over tokens, then L2 normalization where the
model normalizes). Only those layers run per step: the rest of the transformer ran once, in
the embed stage. Untrained, `top_k` reproduces the frozen vectors (up to the float16 cache).
Where no layer trains (token tasks over a frozen backbone, the epochs before gradual
unfreezing), nothing runs: a step reads the final token states the embed stage cached.
Batch shapes come from token counts the host holds, so a step never waits for the device.

This is the "freeze all but the top layers" recipe of Howard & Ruder (2018, "Universal
Language Model Fine-tuning", sec. 3.2-3.3), with gradual unfreezing via `unfreeze_after`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn


class TokenInput(Protocol):
    """A batch of token states (`multitune.training.tokens.PackedTokens`)."""

    @property
    def lengths(self) -> np.ndarray:
        """`(B,)` each row's token count, on the host."""
        ...

    @property
    def has_final(self) -> bool:
        """Whether the final token states (leaving the top cached layer) are held."""
        ...

    def padded(self, final: bool = False) -> tuple[Tensor, Tensor]:
        """`(states (B, T, H) float32, mask (B, T) bool)`; the final states if `final`."""
        ...

    def packed(self, final: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        """`(states (N, H) float32, where (B, T) long, row (N,) long)`: the batch's tokens
        without padding, each token's place in the padded layout, the row each is pooled
        into (B past the row's first window)."""
        ...

    @property
    def windowed(self) -> bool:
        """Whether some row is longer than the encoder's window."""
        ...

    def padded_windows(
        self, final: bool = False
    ) -> tuple[Tensor, Tensor, np.ndarray, Tensor, Tensor]:
        """`(states (W, S, H), mask (W, S), lengths (W,) host, where (B, T), first (B,))`:
        the rows' windows padded, each row token's place in them flattened, each row's
        first window."""
        ...


@dataclass(frozen=True)
class TokenStates:
    """A batch's token states as token heads read them: padded, or packed without padding.

    Attributes:
        values: `(B, T, H)` padded; or `(N, H)`, the batch's N tokens row after row.
        where: None when padded; else `(B, T)` long, the position in `values` of row b's
            token t, N past the row's end.
    """

    values: Tensor
    where: Tensor | None = None

    def apply(self, head: Callable[[Tensor], Tensor]) -> Tensor:
        """`(B, T, C)`: a per-token map `(..., H) -> (..., C)` (a token head) of every token.
        Packed, it runs on the N tokens only; past a row's end the output is 0."""
        out = head(self.values)
        if self.where is None:
            return out
        return torch.cat([out, out.new_zeros(1, *out.shape[1:])])[self.where]


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
        # Imported here: only a top_k backbone needs transformers, which is slow to import.
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
        from transformers import AutoModel  # start-up time, as in `__init__`

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

    @property
    def frozen(self) -> bool:
        """Whether no layer trains now: none is trained, or the trained ones wait (gradual
        unfreezing, a freezing policy)."""
        return not any(p.requires_grad for p in self.top.parameters())

    def forward(self, states: Tensor, mask: Tensor) -> Tensor:
        """Pooled `(B, H)` sentence vectors from `(B, T, H)` states and a `(B, T)` mask."""
        return self.encode(states, mask)[1]

    def run(self, tokens: TokenInput) -> tuple[TokenStates, Tensor]:
        """`(token states after the top layer, pooled (B, H))` of a batch.

        Frozen (`frozen`), the layers' output never changes: the final token states the
        embed stage cached are read instead of computing them again (equal up to the float16
        cache), packed, so that token heads run on the batch's tokens and not on padding.
        Otherwise the layers run on the states entering them (`encode`), padded; a row
        longer than the encoder's window runs window by window, as the encoder ran it.
        The pooled vector is the mean over a row's first window (the encoder's truncated
        sentence vector, what the embed stage's vectors hold).
        """
        if self.frozen and tokens.has_final:
            states, where, row = tokens.packed(final=True)
            b, hidden = where.shape[0], states.shape[1]
            sums = states.new_zeros(b + 1, hidden).index_add_(0, row, states)[:b]
            counts = states.new_zeros(b + 1).index_add_(0, row, states.new_ones(len(row)))[:b]
            pooled = sums / counts.clamp(min=1).unsqueeze(1)
            return TokenStates(states, where), self._normalized(pooled)
        if tokens.windowed:
            states, mask, lengths, where, first = tokens.padded_windows()
            h, _ = self.encode(states, mask, lengths)
            pooled = self.pool(h.index_select(0, first), mask.index_select(0, first))
            return TokenStates(h.reshape(-1, h.shape[-1]), where), pooled
        h, pooled = self.encode(*tokens.padded(), tokens.lengths)
        return TokenStates(h), pooled

    def encode(
        self, states: Tensor, mask: Tensor, lengths: np.ndarray | None = None
    ) -> tuple[Tensor, Tensor]:
        """`(token states (B, T, H) after the top layer, pooled (B, H))`.

        Rows run in groups of `chunk_rows` of similar length, each padded only to its own
        longest row: one long row no longer makes the whole batch pay for its padding.
        Padding is masked out of attention and pooling, so grouping does not change results.

        Args:
            states: `(B, T, H)` entering the first cached layer.
            mask: `(B, T)` bool, the rows' tokens.
            lengths: `(B,)` each row's token count, on the host, where the groups and their
                widths come from; None: read from `mask` (on a GPU, a wait for the device).
        """
        if lengths is None:
            lengths = mask.sum(1).cpu().numpy()
        order = np.argsort(lengths, kind="stable")
        # One copy queued to the device; the groups are views of it.
        device_order = torch.from_numpy(order).to(states.device, non_blocking=True)
        h = torch.zeros_like(states)
        for start in range(0, len(order), self.chunk_rows):
            group = device_order[start : start + self.chunk_rows]
            group_lengths = lengths[order[start : start + self.chunk_rows]]
            width = max(int(group_lengths.max()), 1)
            padded = bool((group_lengths < width).any())
            h[group, :width] = self._layers(states[group, :width], mask[group, :width], padded)
        return h, self.pool(h, mask)

    def pool(self, h: Tensor, mask: Tensor) -> Tensor:
        """`(B, H)`: the mean of each row's token states, L2-normalized where the model
        normalizes (as the sentence-transformers model pools)."""
        weights = mask.unsqueeze(-1).to(h.dtype)
        return self._normalized((h * weights).sum(1) / weights.sum(1).clamp(min=1e-9))

    def _normalized(self, pooled: Tensor) -> Tensor:
        return F.normalize(pooled, p=2, dim=1) if self.normalize else pooled

    def _layers(self, states: Tensor, mask: Tensor, padded: bool) -> Tensor:
        attention = None  # no padding (known on the host): no mask, as transformers skips it
        if padded:
            from transformers.masking_utils import create_bidirectional_mask  # start-up time

            # Not left to transformers to find out whether there is padding: that reads the
            # mask back from the device.
            attention = create_bidirectional_mask(
                config=self.config,
                inputs_embeds=states,
                attention_mask=mask.long(),
                allow_is_bidirectional_skip=False,
            )
        h = states
        if len(self.below):
            with torch.no_grad():
                for layer in self.below:
                    h = layer(h, attention_mask=attention)
        for layer in self.top:
            h = layer(h, attention_mask=attention)
        return h
