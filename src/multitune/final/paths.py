"""Where the final stage reads and writes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class FinalPaths:
    """The final stage's inputs and outputs (absolute)."""

    root: Path
    data: Path
    baselines: Path
    sweep: Path
    reports: Path

    @classmethod
    def under(cls, root: str | Path) -> FinalPaths:
        """The project layout of dvc.yaml under `root`."""
        r = Path(root).resolve()
        return cls(
            r, r / "data", r / "results" / "baselines", r / "results" / "sweep", r / "reports"
        )
