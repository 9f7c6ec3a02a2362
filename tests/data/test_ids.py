"""Row hashes: one digest per row, whatever form its cells come in."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from multitune.data.ids import row_hashes


def test_vectors_as_arrow_data_hash_as_the_same_vectors_as_arrays() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(10, 4)).astype(np.float32)
    x[7] = x[2]  # a duplicate: equal inputs, equal digests
    rows = [None if i == 3 else x[i].tolist() for i in range(10)]  # one row without a vector
    lists = pa.array(rows, type=pa.list_(pa.float32(), 4))
    arrow = pd.DataFrame(
        {
            "vec": pd.arrays.ArrowExtensionArray(pa.chunked_array([lists[:5], lists[5:]])),
            "text": list("abcdefgcij"),
        }
    )
    arrays = arrow.assign(vec=[None if r is None else np.asarray(r, np.float32) for r in rows])
    digests = row_hashes(arrow, ["vec", "text"])
    assert digests.tolist() == row_hashes(arrays, ["vec", "text"]).tolist()
    assert digests[2] == digests[7] and len(set(digests)) == 9
