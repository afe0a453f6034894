"""Write hourly weather readings as CSV: a table with an ISO-8601 timestamp (`time_hour`) and an identifier
(`reading_id`, one per row, as an export from a weather service carries), from the NYC flights weather table
bundled in examples/data/tables/ (nycflights13::weather, see its PROVENANCE.md).

    python examples/weather.py FILE [--rows 3000] [--skip 0]      (--skip: start the sample that many rows later)
"""

from __future__ import annotations

import argparse
import gzip
import sys
from pathlib import Path

import pandas as pd

TABLE = Path(__file__).resolve().parent / "data" / "tables" / "weather.csv.gz"


def weather_frame() -> pd.DataFrame:
    """Every reading of the table (one airport's year after another's, as it is stored), each with a
    `reading_id`."""
    with gzip.open(TABLE, "rb") as fh:
        frame = pd.read_csv(fh)
    frame.insert(0, "reading_id", [f"wx-{i:06d}" for i in range(len(frame))])
    return frame


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--skip", type=int, default=0)
    args = parser.parse_args()
    # a sample spread over the table's three airports and its year, not the first airport's first months
    frame = weather_frame()
    step = max(1, len(frame) // args.rows)
    frame.iloc[args.skip::step].head(args.rows).to_csv(args.file, index=False)
    print(args.file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
