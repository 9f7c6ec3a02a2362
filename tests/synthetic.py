"""One seeded synthetic table with several modalities and task types.

`synthetic_frame()` builds it (a few hundred rows): a `text` column of template sentences
whose words carry the labels, a numeric block `num_a`..`num_c`, a precomputed `audio` vector
column, a group column `author` (null for some rows), and targets of every task type, each
labelled on part of the rows only. `synthetic_params(source)` is a matching params mapping.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

TOPICS = {
    "sports": ["match", "goal", "team", "coach", "season", "stadium"],
    "politics": ["vote", "senate", "policy", "election", "minister", "law"],
    "science": ["experiment", "theory", "lab", "data", "physics", "cell"],
}
MOODS = {"neg": ["awful", "boring", "weak", "grim"], "pos": ["great", "brilliant", "fine", "bold"]}
TEMPLATES = [
    "The {w1} was {adj} and the {w2} felt {adj2}.",
    "Everyone said the {w1} looked {adj} after the {w2}.",
    "A {adj} {w1}, frankly, with a {adj2} {w2} to follow.",
    "I think this {w1} is {adj}; the {w2} is {adj2} too.",
    "{adj_cap} {w1}! Nobody expected such a {adj2} {w2}.",
]


def synthetic_frame(n: int = 300, seed: int = 0) -> pd.DataFrame:
    """The synthetic table (deterministic for a given `n` and `seed`)."""
    rng = np.random.default_rng(seed)
    topic = rng.choice(list(TOPICS), size=n)
    mood = rng.choice(list(MOODS), size=n, p=[0.4, 0.6])
    texts = []
    for t, m in zip(topic, mood, strict=True):
        w1, w2 = rng.choice(TOPICS[t], size=2, replace=False)
        adj, adj2 = rng.choice(MOODS[m], size=2)
        template = TEMPLATES[rng.integers(len(TEMPLATES))]
        texts.append(
            template.format(w1=w1, w2=w2, adj=adj, adj2=adj2, adj_cap=str(adj).capitalize())
        )
    positive = (mood == "pos").astype(float)
    topic_idx = np.array([list(TOPICS).index(t) for t in topic], dtype=float)
    nums = rng.normal(size=(n, 3)) + np.stack([positive, topic_idx, np.zeros(n)], axis=1)
    audio = rng.normal(size=(n, 8)).astype(np.float32)
    audio[:, 0] += 2 * positive
    rating = 2.5 + 1.5 * positive + 0.3 * rng.normal(size=n)
    tags = [
        "|".join(sorted({str(t)} | ({"upbeat"} if m == "pos" else set())))
        for t, m in zip(topic, mood, strict=True)
    ]
    frame = pd.DataFrame(
        {
            "text": texts,
            "num_a": nums[:, 0],
            "num_b": nums[:, 1],
            "num_c": nums[:, 2],
            "audio": list(audio),
            "author": [f"author_{i}" for i in rng.integers(0, 40, size=n)],
            "sentiment": np.where(mood == "pos", "positive", "negative"),
            "topic": topic,
            "rating": rating,
            "tags": tags,
            "mood": np.where(mood == "pos", "calm", np.where(topic == "sports", "angry", "sad")),
        }
    )
    # Partial labels: each task is labelled on a different subset of rows.
    for column, keep in [("sentiment", 0.7), ("topic", 0.8), ("rating", 0.6), ("tags", 0.5)]:
        frame.loc[rng.random(n) > keep, column] = None
    frame.loc[rng.random(n) > 0.5, "mood"] = None
    frame.loc[rng.random(n) < 0.15, "author"] = None
    return frame


def synthetic_params(source: str | Path, *, text_encoder: str = "tfidf_svd") -> dict[str, Any]:
    """A params mapping for the synthetic table at `source` (cheap encoders by default)."""
    text_enc: dict[str, Any] = {"name": text_encoder}
    if text_encoder == "tfidf_svd":
        text_enc |= {"dims": 16, "min_df": 1}
    return {
        "data": {
            "source": str(source),
            "modalities": {
                "text": {"column": "text", "encoder": text_enc},
                "meta": {"columns": ["num_a", "num_b", "num_c"], "encoder": {"name": "numeric"}},
                "audio": {"column": "audio", "encoder": {"name": "precomputed"}},
            },
        },
        "tasks": [
            {"name": "sentiment", "type": "binary", "column": "sentiment"},
            {"name": "topic", "type": "classification", "column": "topic"},
            {"name": "rating", "type": "regression", "column": "rating"},
            {"name": "tags", "type": "multilabel", "column": "tags"},
            {"name": "mood", "type": "distribution", "column": "mood"},
        ],
        "split": {"seed": 7, "fractions": [0.7, 0.15, 0.15], "group_column": "author"},
    }


def write_synthetic(directory: Path, frame: pd.DataFrame | None = None) -> Path:
    """Write the synthetic table (or `frame`) to `directory/table.parquet`; return the path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "table.parquet"
    (synthetic_frame() if frame is None else frame).to_parquet(path, index=False)
    return path


PEOPLE = ["Alice", "Bob", "Maria", "Priyanka", "Chen", "Oluwaseun"]
PLACES = ["Paris", "Berlin", "New York", "Cape Town", "Lima", "Reykjavik"]
NER_TEMPLATES = [
    "{per} flew to {loc} on Monday .",
    "In {loc} , {per} met {per2} for lunch .",
    "{per} said the weather was fine .",
    "Nobody in {loc} had heard of it .",
    "{per} and {per2} argued about {loc} again .",
]


def ner_frame(n: int = 240, seed: int = 0) -> pd.DataFrame:
    """Sentences with people and places, tagged per whitespace word in BIO form (`tags`), and a
    sentence-level label (`has_place`); some rows carry no tags."""
    rng = np.random.default_rng(seed)
    texts, tags, places = [], [], []
    for _ in range(n):
        template = NER_TEMPLATES[rng.integers(len(NER_TEMPLATES))]
        fill = {
            "per": str(rng.choice(PEOPLE)),
            "per2": str(rng.choice(PEOPLE)),
            "loc": str(rng.choice(PLACES)),
        }
        words, labels = [], []
        for token in template.split():
            if token.startswith("{"):
                key = token.strip("{}")
                kind = "LOC" if key == "loc" else "PER"
                parts = fill[key].split()
                words += parts
                labels += [f"B-{kind}"] + [f"I-{kind}"] * (len(parts) - 1)
            else:
                words.append(token)
                labels.append("O")
        texts.append(" ".join(words))
        tags.append(labels)
        places.append("yes" if "{loc}" in template else "no")
    frame = pd.DataFrame(
        {"row": [f"r{i}" for i in range(n)], "text": texts, "tags": tags, "has_place": places}
    )
    frame.loc[rng.random(n) < 0.2, "tags"] = None
    return frame


def word_tags(texts: pd.Series) -> pd.Series:
    """Per whitespace word of each text: B-TOPIC for a topic word, B-MOOD for a mood word, O
    otherwise (a token-classification target for the synthetic table)."""
    topic = {w for words in TOPICS.values() for w in words}
    mood = {w for words in MOODS.values() for w in words}

    def tag(word: str) -> str:
        w = word.strip(".,;!?").lower()
        return "B-TOPIC" if w in topic else "B-MOOD" if w in mood else "O"

    return texts.map(lambda text: [tag(word) for word in str(text).split()])


def run_data_stages(params: Any, data_dir: Path) -> None:
    """Ingest, split and embed for validated `params`, writing `data_dir` as the DVC stages do
    (dataset.parquet, tasks.json, splits.parquet, features/)."""
    from multitune.data import write_parquet, write_tasks
    from multitune.data.ingest import ingest
    from multitune.data.split import split_rows
    from multitune.embed.stage import embed

    result = ingest(params)
    result.write(data_dir / "dataset.parquet")
    write_tasks(data_dir / "tasks.json", result.tasks)
    splits = split_rows(result.frame, params).frame
    write_parquet(data_dir / "splits.parquet", splits)
    embed(data_dir / "dataset.parquet", splits, params.data, data_dir / "features")
