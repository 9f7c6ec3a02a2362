"""`dvc plots show` renders offline: the project's template inlines vega and DVC uses it."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd

from multitune.report import write_curves

ROOT = Path(__file__).resolve().parents[2]
DVC = Path(sys.executable).with_name("dvc")


def test_plain_dvc_plots_show_loads_no_script_from_the_network(tmp_path: Path):
    subprocess.run([DVC, "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    # The project's own config and template: plain `dvc plots show` must pick the template.
    shutil.copy(ROOT / ".dvc" / "config", tmp_path / ".dvc" / "config")
    shutil.copytree(ROOT / ".dvc" / "plots", tmp_path / ".dvc" / "plots")
    curves = pd.DataFrame(
        [
            {"task": t, "metric": "acc", "kind": k, "seed": 0, "epoch": e, "value": 0.1 * e}
            for t in ("a", "b")
            for k in ("multi", "single")
            for e in range(3)
        ]
    )
    write_curves(curves, tmp_path / "reports" / "curves")
    (tmp_path / "dvc.yaml").write_text(
        "plots:\n  - reports/curves:\n      x: epoch\n      y: [multi, single]\n"
    )
    subprocess.run(
        [DVC, "plots", "show", "-o", "out"], cwd=tmp_path, check=True, capture_output=True
    )
    page = (tmp_path / "out" / "index.html").read_text()
    assert not re.search(r"""<script[^>]*\bsrc\s*=\s*["']?https?:""", page)
    assert "vegaEmbed" in page and "reports_curves_a_csv" in page
    assert (ROOT / ".dvc" / "plots" / "offline.html").stat().st_size < 2_000_000
