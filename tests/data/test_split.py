"""split: fractions, stratification, no group leak, duplicates together, order-independence."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
from synthetic import synthetic_frame, synthetic_params

from multitune.config import Params, validate_params
from multitune.data import write_parquet
from multitune.data.ingest import ingest
from multitune.data.split import SplitResult, split_file, split_rows
from multitune.errors import DataError


def _prepared(tmp_path: Any, frame: pd.DataFrame, **split: Any) -> tuple[pd.DataFrame, Params]:
    frame.to_parquet(tmp_path / "t.parquet", index=False)
    raw = synthetic_params(tmp_path / "t.parquet")
    raw["split"] |= split
    params = validate_params(raw)
    return ingest(params).frame, params


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, Params]:
    return _prepared(tmp_path_factory.mktemp("big"), synthetic_frame(n=1500, seed=1))


def _joined(frame: pd.DataFrame, result: SplitResult) -> pd.DataFrame:
    return frame.merge(result.frame, on="id", validate="1:1")


def test_fractions_and_every_class_in_every_split(big: tuple[pd.DataFrame, Params]) -> None:
    frame, params = big
    result = split_rows(frame, params)
    assert len(result.frame) == len(frame) and result.frame["id"].is_unique
    shares = result.frame["split"].value_counts(normalize=True)
    for name, fraction in zip(("train", "val", "test"), params.split.fractions, strict=True):
        assert shares[name] == pytest.approx(fraction, abs=0.03)
    rows = _joined(frame, result)
    for column in ("sentiment", "topic", "mood"):
        table = pd.crosstab(rows[column], rows["split"])
        assert (table > 0).all().all(), table
        # Stratified: each class's share of a split is close to its share overall.
        overall = rows[column].value_counts(normalize=True)
        for split in ("train", "val", "test"):
            share = rows.loc[rows["split"] == split, column].value_counts(normalize=True)
            assert (share - overall).abs().max() < 0.08
    assert result.missing == []


def test_no_group_in_two_splits_and_null_groups_spread(big: tuple[pd.DataFrame, Params]) -> None:
    frame, params = big
    rows = _joined(frame, split_rows(frame, params))
    assert rows.dropna(subset=["author"]).groupby("author")["split"].nunique().max() == 1
    # A null group is a group of its own: those rows are not all sent to one split.
    assert rows.loc[rows["author"].isna(), "split"].nunique() == 3


def test_same_split_whatever_the_row_order(big: tuple[pd.DataFrame, Params]) -> None:
    frame, params = big
    first = split_rows(frame, params).frame
    shuffled = frame.sample(frac=1.0, random_state=11).reset_index(drop=True)
    pd.testing.assert_frame_equal(first, split_rows(shuffled, params).frame)
    other_seed = params.model_copy(update={"split": params.split.model_copy(update={"seed": 8})})
    assert not split_rows(frame, other_seed).frame.equals(first)


def test_duplicate_inputs_share_a_split_and_are_reported(tmp_path: Any) -> None:
    frame = synthetic_frame(n=400, seed=2)
    copies = frame.sample(n=30, random_state=0).copy()
    copies["author"] = None  # the same inputs filed without (or under another) group
    copies["sentiment"] = None
    frame = pd.concat([frame, copies], ignore_index=True)
    data, params = _prepared(tmp_path, frame)
    result = split_rows(data, params)
    rows = _joined(data, result)
    inputs = ["text", "num_a", "num_b", "num_c"]
    assert rows.groupby(inputs)["split"].nunique().max() == 1
    assert result.duplicate_rows >= 60 and result.duplicate_sets >= 30
    assert any("share their modality inputs" in line for line in result.summary())


def test_classes_too_rare_for_every_split_are_reported(tmp_path: Any) -> None:
    frame = synthetic_frame(n=300, seed=3)
    rare = frame.index[frame["topic"].notna()][:2]
    frame.loc[rare, "topic"] = "cooking"
    frame.loc[rare, "author"] = None
    data, params = _prepared(tmp_path, frame)
    result = split_rows(data, params)
    assert [(t, c) for t, c, _ in result.missing] == [("topic", "cooking")]
    assert any("class 'cooking' has no row in" in line for line in result.summary())


def test_the_stage_reads_inputs_in_batches_and_splits_alike(
    big: tuple[pd.DataFrame, Params], tmp_path: Any
) -> None:
    frame, params = big
    frame = pd.concat([frame, frame.head(40).assign(id=lambda f: f["id"] + "-copy")])
    write_parquet(tmp_path / "dataset.parquet", frame)
    whole = split_rows(frame.reset_index(drop=True), params)
    batched = split_file(tmp_path / "dataset.parquet", params, batch_rows=97)
    pd.testing.assert_frame_equal(batched.frame, whole.frame)
    assert (batched.duplicate_rows, batched.duplicate_sets) == (80, 40)


def test_each_row_names_its_unit_the_group_or_duplicate_set_it_moves_with(
    big: tuple[pd.DataFrame, Params],
) -> None:
    frame, params = big
    rows = _joined(frame, split_rows(frame, params))
    grouped = rows.dropna(subset=["author"])
    assert grouped.groupby("author")["unit"].nunique().max() == 1  # one unit per group
    assert rows.groupby("unit")["split"].nunique().max() == 1  # a unit never straddles splits
    assert rows["unit"].isin(rows["id"]).all()  # named by one of its rows' ids


def test_a_group_column_with_one_group_is_a_clear_error(tmp_path: Any) -> None:
    frame = synthetic_frame(n=120)
    frame["author"] = "everyone"
    prepared, params = _prepared(tmp_path, frame, group_column="author")
    with pytest.raises(DataError, match=r"val and test got no rows: split.group_column 'author'"):
        split_rows(prepared, params)
