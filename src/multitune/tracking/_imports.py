"""Load staged model artifacts, predict an example, print the top-level modules imported.

Run by `multitune.tracking.requirements.served_requirements` in a fresh interpreter:
`python -m multitune.tracking._imports '<artifacts json>' <example.parquet>`. The last line
of stdout is a JSON list of module names.
"""

from __future__ import annotations

import json
import sys


def main(argv: list[str]) -> None:
    """Load, predict once, print the modules."""
    artifacts, example_file = json.loads(argv[0]), argv[1]

    # Imported here, after the arguments: what they import is part of what is measured.
    import pandas as pd

    from multitune.tracking.pyfunc_model import load_local

    example = pd.read_parquet(example_file)
    load_local(artifacts).predict(None, example)
    modules = sorted({name.partition(".")[0] for name in sys.modules})
    print(json.dumps(modules))


if __name__ == "__main__":
    main(sys.argv[1:])
