"""How fast other CSV readers parse what ``onnxkit score``'s workers parse with Arrow:
``python benchmarks/bench_csv_parsers.py``.

Issue 12's 0.3x goal leaves reading, checking and writing about 0.3 us a row on the bundled MLP
(30 numbers, ~210 bytes of text a row), and Arrow's CSV reader alone takes about twice that.
This measures whether another well-kept reader would change the picture: one 5,000-row block
of resampled breast-cancer rows (score's default chunk, shortest round-trip text), parsed
into float64 columns on one thread by each reader available here, in CPU microseconds a row
(the least of ``--runs``, so a busy machine shows as little as possible). Polars is not a
dependency of the kit; it is measured when installed (``pip install polars``).
"""

from __future__ import annotations

import argparse
import csv
import io
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
from sklearn.datasets import load_breast_cancer

ROWS = 5000


def block() -> tuple[bytes, list[str]]:
    """The CSV block (header + ROWS rows) and its column names."""
    data = load_breast_cancer().data
    rows = data[np.random.default_rng(0).integers(0, len(data), ROWS)]
    names = [f"f{i}" for i in range(data.shape[1])]
    lines = [",".join(names)] + [",".join(repr(float(v)) for v in row) for row in rows]
    return ("\n".join(lines) + "\n").encode(), names


def least_us_per_row(parse: Callable[[], Any], runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.process_time_ns()
        parse()
        best = min(best, time.process_time_ns() - start)
    return best / ROWS / 1000


def readers(data: bytes, names: list[str]) -> dict[str, Callable[[], Any]]:
    """Each reader's parse of the block into float64 columns."""
    arrow_types = {name: pa.float64() for name in names}

    def arrow() -> Any:
        return pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(use_threads=False),
            convert_options=pacsv.ConvertOptions(column_types=arrow_types),
        )

    def numpy_loadtxt() -> Any:
        return np.loadtxt(io.BytesIO(data), delimiter=",", skiprows=1)

    def python_csv() -> Any:
        rows = csv.reader(io.StringIO(data.decode()))
        next(rows)
        return [[float(cell) for cell in row] for row in rows]

    found = {
        "Arrow (score's reader)": arrow,
        "numpy.loadtxt": numpy_loadtxt,
        "csv + float": python_csv,
    }
    try:
        import polars as pl
    except ImportError:
        return found
    polars_types = {name: pl.Float64 for name in names}

    def polars() -> Any:
        return pl.read_csv(data, schema=polars_types)

    found[f"polars {pl.__version__} (POLARS_MAX_THREADS=1 for one thread)"] = polars
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    data, names = block()
    print(f"{ROWS} rows x {len(names)} numbers, {len(data) / ROWS:.0f} bytes a row; "
          f"CPU us a row, least of {args.runs} runs\n")  # fmt: skip
    print("| reader | CPU us/row |\n|---|---|")
    for name, parse in readers(data, names).items():
        print(f"| {name} | {least_us_per_row(parse, args.runs):.2f} |")


if __name__ == "__main__":
    main()
