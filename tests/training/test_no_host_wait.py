"""No host wait inside a training step, on any path: nothing a step computes is read back.

On a GPU such a read (`.item()`, `int(t)`, a boolean mask, `nonzero`, a copy to the host)
stops the CPU from queueing kernels until the device catches up. A step must take its shapes
from what the host already knows (the token offsets before they became tensors, the batch's
row indices before they were copied) and keep every tensor it computes on the device.

The probe runs on the CPU: a `TorchDispatchMode` flags the data-dependent operators, and a
`TorchFunctionMode` the explicit copies to the host (`.cpu()`, `.numpy()`, `.tolist()`), each
with the code that called it. On a GPU, `test_gpu.py` runs the same steps under
`torch.cuda.set_sync_debug_mode("error")`.
"""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any

import pytest
import torch
from token_steps import PATHS, run_steps, tiny_transformer, token_data, token_params
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from multitune.training import TrainingData

aten = torch.ops.aten
_READS = {
    aten._local_scalar_dense,  # .item(), int(t), float(t), bool(t)
    aten.item,
    aten.nonzero,
    aten.argwhere,
    aten.masked_select,
    aten.unique_consecutive,
    aten._unique2,
    aten.unique_dim,
}
_INDEXING = {aten.index, aten.index_put, aten.index_put_, aten._index_put_impl_}
_COPIES = {"cpu", "numpy", "tolist"}
# Reads that happen only where they wait for nothing, on plain CPU tensors; the GPU test
# covers the device path beside them. (innermost multitune file, function) -> why.
_CPU_ONLY = {
    ("training/clipping.py", "clip_grad_norm"): "reads the norm only for CPU gradients",
}


class HostReads(TorchDispatchMode):
    """Records each data-dependent read while `armed`: `(what, where)`."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False
        self.found: list[tuple[str, str]] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if self.armed:
            what = _data_dependent(func, args)
            if what:
                self.record(what)
        return func(*args, **kwargs)

    def record(self, what: str) -> None:
        where = _where()
        if where is not None:
            self.found.append((what, where))


class HostCopies(TorchFunctionMode):
    """Hands explicit copies to the host (`.cpu()`, `.numpy()`, `.tolist()`) to `reads`."""

    def __init__(self, reads: HostReads) -> None:
        super().__init__()
        self.reads = reads

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        name = getattr(func, "__name__", "")
        if self.reads.armed and name in _COPIES:
            self.reads.record(f"Tensor.{name}()")
        return func(*args, **(kwargs or {}))


def _data_dependent(func: Any, args: Any) -> str | None:
    packet = func.overloadpacket
    if packet in _READS:
        return str(func)
    if packet in _INDEXING:
        indices = args[1] if len(args) > 1 else ()
        if any(
            isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in indices
        ):
            return f"{func} with a boolean mask"
    if packet is aten.repeat_interleave and len(args) == 1:  # output size read from repeats
        return str(func)
    return None


def _where() -> str | None:
    """A short stack: the innermost caller outside torch, then the multitune frames, innermost
    first; None when the read is one of `_CPU_ONLY`."""
    stack = [f for f in traceback.extract_stack() if f.filename != __file__]
    own = [f for f in stack if "/multitune/" in f.filename and "/tests/" not in f.filename]
    if own and any(own[-1].filename.endswith(f) and own[-1].name == fn for f, fn in _CPU_ONLY):
        return None
    outside = [f for f in stack if "/torch/" not in f.filename]
    frames = [outside[-1], *[f for f in own[::-1] if f is not outside[-1]]][:4]
    return " <- ".join(f"{_short(f.filename)}:{f.lineno} {f.name}" for f in frames)


def _short(filename: str) -> str:
    for root in ("/multitune/", "/site-packages/"):
        if root in filename:
            return filename.split(root)[-1]
    return filename


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_transformer(tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture(scope="module")
def data(model_dir: Path) -> dict[bool, TrainingData]:
    """The token data, with each row in one window (False) and long rows in two (True)."""
    return {w: token_data(model_dir, windows=w) for w in (False, True)}


@pytest.mark.parametrize("path", list(PATHS))
def test_a_training_step_reads_nothing_back_from_the_device(
    path: str, data: dict[bool, TrainingData], monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = PATHS[path]
    params = token_params(setup["backbone"], epoch_steps=2)
    reads = HostReads()
    with reads, HostCopies(reads):
        run_steps(
            params,
            data[setup.get("windows", False)],
            setup["tasks"],
            lambda: setattr(reads, "armed", True),
            lambda: setattr(reads, "armed", False),
            monkeypatch,
        )
    if reads.found:
        found = "\n".join(f"  {what} at {where}" for what, where in dict.fromkeys(reads.found))
        pytest.fail(f"{path}: a step reads from the device:\n{found}", pytrace=False)


def test_the_probe_flags_each_kind_of_read() -> None:
    t = torch.arange(6.0)
    reads = HostReads()
    with reads, HostCopies(reads):
        t.sum()  # not armed: not recorded
        reads.armed = True
        int(t.max())
        t[t > 2] = 0.0
        _ = t[t > 2], t.nonzero(), t.tolist()
        t.sum() * 2  # a read-free op
    whats = [what for what, _ in reads.found]
    assert whats == [
        "aten._local_scalar_dense.default",
        "aten.index_put_.default with a boolean mask",
        "aten.index.Tensor with a boolean mask",
        "aten.nonzero.default",
        "Tensor.tolist()",
    ]
