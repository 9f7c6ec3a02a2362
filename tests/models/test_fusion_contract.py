"""Contract suite run over every registered fusion (a new fusion gets it by registering)."""

from __future__ import annotations

import pytest
import torch

from multitune.models.fusion import FUSIONS

DIM, BATCH = 8, 32


def _configs(name: str, modalities: list[str]) -> list:
    cls = FUSIONS.config(name)
    configs = [cls(), cls(modality_dropout=0.5)]
    if name == "hierarchical" and len(modalities) > 2:
        configs.append(cls(groups={"g": modalities[:2]}))
    if name == "film":
        configs.append(cls(conditioner=modalities[-1]))
    return configs


@pytest.mark.parametrize("n_modalities", [1, 3])
@pytest.mark.parametrize("name", FUSIONS.names())
def test_shape_and_every_parameter_gets_a_gradient(name: str, n_modalities: int) -> None:
    torch.manual_seed(0)
    modalities = [f"m{i}" for i in range(n_modalities)]
    for config in _configs(name, modalities):
        fusion = FUSIONS.build(config, modalities, DIM).train()
        encoded = {m: torch.randn(BATCH, DIM, requires_grad=True) for m in modalities}
        out = fusion(encoded)
        assert out.shape == (BATCH, fusion.out_dim)
        assert torch.isfinite(out).all()
        (out * torch.randn_like(out)).sum().backward()
        for pname, p in fusion.named_parameters():
            assert p.grad is not None, f"{name}: {pname} got no gradient"
            assert torch.isfinite(p.grad).all()
        assert all(x.grad is not None for x in encoded.values()), "an input is ignored"


@pytest.mark.parametrize("name", FUSIONS.names())
def test_modality_dropout_only_in_training(name: str) -> None:
    modalities = ["a", "b"]
    fusion = FUSIONS.build(FUSIONS.config(name)(modality_dropout=0.9), modalities, DIM)
    encoded = {m: torch.randn(BATCH, DIM) for m in modalities}
    fusion.eval()
    torch.testing.assert_close(fusion(encoded), fusion(encoded))
    fusion.train()
    torch.manual_seed(1)
    dropped = fusion(encoded)
    assert not torch.allclose(dropped, fusion.eval()(encoded))


def test_bad_fusion_settings_say_what_to_fix() -> None:
    with pytest.raises(ValueError, match="must divide the encoder width"):
        FUSIONS.build(FUSIONS.config("attention")(heads=3), ["a"], DIM)
    with pytest.raises(ValueError, match="unknown modality 'c'"):
        FUSIONS.build(FUSIONS.config("hierarchical")(groups={"g": ["a", "c"]}), ["a", "b"], DIM)
    with pytest.raises(ValueError, match="conditioner 'z' is not a modality"):
        FUSIONS.build(FUSIONS.config("film")(conditioner="z"), ["a", "b"], DIM)
