"""Each family's settings (`multitune.config.methods`) and its implementations agree: every
config class has exactly one registered implementation, and every implementation registers
against one of them."""

from __future__ import annotations

import inspect
from types import ModuleType
from typing import Any, get_args, get_origin

import pytest

from multitune.config.methods import encoders, freezing, fusion, sampling, sharing, weighting
from multitune.embed import ENCODERS
from multitune.models.fusion import FUSIONS
from multitune.models.sharing import SHARINGS
from multitune.registry import MethodConfig, Registry, union_members
from multitune.training.freezing import FREEZINGS
from multitune.training.sampling import SAMPLERS
from multitune.training.weighting import WEIGHTINGS

FAMILIES = [
    (weighting, weighting.WeightingMethod, WEIGHTINGS),
    (freezing, freezing.FreezingMethod, FREEZINGS),
    (sampling, sampling.SamplingMethod, SAMPLERS),
    (fusion, fusion.FusionMethod, FUSIONS),
    (sharing, sharing.SharingMethod, SHARINGS),
    (encoders, encoders.EncoderMethod, ENCODERS),
]


def _methods(module: ModuleType) -> list[type[MethodConfig]]:
    """The config classes `module` defines for one method each (a `name` literal; a family's
    base class of shared options has none)."""
    return [
        cls
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, MethodConfig)
        and cls.__module__ == module.__name__
        and get_origin(cls.model_fields["name"].annotation) is not None
    ]


@pytest.mark.parametrize(
    ("module", "union", "registry"), FAMILIES, ids=[m.__name__ for m, _, _ in FAMILIES]
)
def test_every_config_has_one_implementation(
    module: ModuleType, union: Any, registry: Registry[Any]
) -> None:
    configs = union_members(union)
    assert set(_methods(module)) == set(configs), "a config class left out of the union"
    assert len(set(configs)) == len(configs)
    registered = [registry.config(name) for name in registry.names()]
    assert len(registered) == len(configs)
    assert set(registered) == set(configs), "a config class without an implementation"
    for cls in configs:
        (key,) = get_args(cls.model_fields["name"].annotation)
        assert registry.config(key) is cls


def test_an_implementation_registers_against_its_family_only() -> None:
    with pytest.raises(ValueError, match="DwaConfig is not a fusion config"):
        FUSIONS.register(weighting.DwaConfig)
