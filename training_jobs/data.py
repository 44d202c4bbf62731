"""The job's input: reading a channel's CSV files, the schema, missing values, the hold-out.

Every cell is judged by the contract's value rule (``onnxkit.contract.values``), the rule the
inference function applies to requests: what is missing, what is a number. The channel is
read by ``training_jobs.table`` (numeric columns straight to float32, the others as text) and
the rule applied by ``training_jobs.cells`` (vectorised). What the job notices and works
around in the data is printed as a ``warning:`` line and recorded in the schema's warnings
(the manifest's ``data.warnings``).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sklearn.model_selection import train_test_split

from onnxkit.contract.values import DEFAULT_MISSING_TOKENS, ValueRule, number_problem
from training_jobs.cells import (
    float64,
    in_range,
    is_token,
    missing_mask,
    number_mask,
    stripped,
    texts,
    to_numpy,
)
from training_jobs.errors import TrainingError
from training_jobs.table import Table

# A numeric-looking target with at most this many distinct integer values is a class label.
MAX_AUTO_CLASSES = 20
# A column whose non-missing values are at least this share numbers is numeric: the rest are
# typos, reported as unparseable rather than silently turning the column categorical.
NUMERIC_SHARE = 0.9
# What a categorical ONNX input is fed for a missing value: the inference function feeds the
# same (functions/inference/feed.py MISSING_CATEGORY), so "" is one category of its own.
MISSING_CATEGORY = ""
# A categorical column with at least this many values, all different, is likely an identifier.
ID_LIKE_MIN_ROWS = 20
_BLANK = " \t"
# "12,345" or "1,234,567.89": a number written with thousands separators.
_THOUSANDS = r"[+-]?[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]*)?"


# Training peaks at about this many bytes of memory per byte of CSV, plus a base (the
# imports: about 250-300 MiB). Measured on 547 MB of CSV (1M x 50 synthetic numbers, ~11
# bytes a cell; docs/training-scale.md), peak above the imports: MLP 505 MiB (1.0 byte a
# byte: the rows during the hold-out split, later the Pipeline's output and the MLP's
# early-stopping copy of it); hist_gradient_boosting 593 MiB (1.1: its float64 training and
# validation parts; 1.0 at 10M rows; 1.9 before the job made its early-stopping split). Kept
# at 3: tables of shorter numbers hold more float32 per CSV byte, and random_forest's fitted
# trees and their conversion take 4.5 at 1M (0.8 at 10M, where its trees stop growing); the
# reader before the columnar one took 11 for reading alone.
MEMORY_PER_CSV_BYTE = 3
BASE_MEMORY = 384 << 20


# Converting a fitted random forest to ONNX takes about this much memory above what the job
# holds after the fit, per tree node and per leaf weight (skl2onnx lists every attribute of
# every node as Python objects, then copies them into the protobuf); the compression search,
# which converts its variants too, about MEMORY_PER_SEARCHED_NODE more. Measured with train.py
# and skl2onnx (docs/training-scale.md, "A forest's memory"): binary 1.84M nodes 1,363 MiB
# (the search +531), regression 2.53M nodes 2,225 MiB (the search +0), 5 classes 0.91M nodes
# 1,231 MiB, regression 1.62M nodes (5 rows a leaf) 1,258 MiB (the search +0); these
# constants estimate 1.04-1.26x of that for conversion, 1.18-1.56x with the search: high.
MEMORY_PER_TREE_NODE = 850
MEMORY_PER_LEAF_WEIGHT = 250
MEMORY_PER_SEARCHED_NODE = 300


def available_memory() -> int | None:
    """The memory this machine can still give a process (MemAvailable), or None if unknown."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def memory_problem(data_bytes: int, available: int | None) -> str | None:
    """Why data of ``data_bytes`` of CSV cannot be trained on here, or None when it can."""
    needed = BASE_MEMORY + MEMORY_PER_CSV_BYTE * data_bytes
    if available is None or needed <= available:
        return None
    return (
        f"the training data is {data_bytes / 1e9:.2f} GB of CSV; reading and preparing it takes "
        f"about {needed / 1e9:.1f} GB of memory ({MEMORY_PER_CSV_BYTE} bytes per CSV byte, "
        f"measured) and this instance has {available / 1e9:.1f} GB available: choose a "
        "training.instance_type with more memory, or train on a sample"
    )


def forest_memory_problem(
    nodes: int, leaf_weights: int, compressed: bool, available: int | None
) -> str | None:
    """Why a fitted forest of ``nodes`` tree nodes and ``leaf_weights`` cannot be converted
    (and, if ``compressed``, searched for a smaller variant) in the memory still
    ``available``, or None when it can."""
    per_node = MEMORY_PER_TREE_NODE + (MEMORY_PER_SEARCHED_NODE if compressed else 0)
    needed = per_node * nodes + MEMORY_PER_LEAF_WEIGHT * leaf_weights
    if available is None or needed <= available:
        return None
    return (
        f"the fitted random forest has {nodes:,} tree nodes; converting it"
        f"{' and searching for a smaller variant' if compressed else ''} takes about "
        f"{needed / 1e9:.1f} GB more memory and this instance has {available / 1e9:.1f} GB "
        "available: bound the trees (max_depth, fewer n_estimators), or choose a "
        "training.instance_type with more memory"
    )


@dataclass
class Schema:
    """Feature kinds and the task, inferred from the training table."""

    numeric: list[str]
    categorical: list[str]
    features: list[str]  # CSV order, target removed
    task: str
    rule: ValueRule = field(default_factory=ValueRule)
    # Categories that get a one-hot column, per categorical feature (empty: all, learned).
    categories: dict[str, list[str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def parse_numbers(
    column: Any, rule: ValueRule, name: str, where: Callable[[int], str] = Table.row
) -> np.ndarray:
    """A numeric column as ``ValueRule.number`` reads it (float64, NaN for missing).

    Raises TrainingError naming the first invalid cell's row (``where``), column and text.
    """
    column = texts(column)
    bare = stripped(column)
    missing = missing_mask(column, rule)
    readable = ~missing & number_mask(column)
    values = float64(bare, readable)
    problems = ~missing & ~(readable & in_range(values))
    if problems.any():
        index = int(np.argmax(problems))
        text = str(column[index])
        if not readable[index]:
            hint = _not_a_number_hint(text, rule)
            raise TrainingError(f"column {name!r} {where(index)}: {text!r} is not a number{hint}")
        problem = number_problem(float(values[index]))
        raise TrainingError(f"column {name!r} {where(index)}: {text!r}: {problem}")
    return values


def _not_a_number_hint(text: str, rule: ValueRule) -> str:
    stripped = text.strip(_BLANK)
    if re.fullmatch(_THOUSANDS, stripped):
        return " (remove the thousands separators, or pass categorical=... if it is a category)"
    if stripped in DEFAULT_MISSING_TOKENS and stripped not in rule.missing_tokens:
        return f" (add {stripped!r} to missing_values to read it as missing)"
    return " (pass categorical=... if it is a category)"


def _toolkit_spelling(column: str) -> str:
    """How SageMaker's training toolkit passes a hyperparameter whose value is ``column``."""
    try:
        decoded = json.loads(column)
    except ValueError:
        return column
    return "" if decoded is None else str(decoded)


def infer_schema(
    table: Table | pd.DataFrame,
    target: str,
    task: str,
    categorical: Sequence[str],
    rule: ValueRule | None = None,
) -> Schema:
    """Decide numeric vs categorical for each column and classification vs regression.

    Columns the reader already read as numbers (every cell valid) are numeric; the others are
    judged by all their texts: numeric when every present cell is a number, an error naming
    the first bad cell when at least ``NUMERIC_SHARE`` are, categorical otherwise.
    """
    table = table if isinstance(table, Table) else Table.of_frame(table)
    rule = rule or ValueRule()
    if target not in table.columns:
        message = (
            f"target column {target!r} not found; columns are {', '.join(map(str, table.columns))}"
        )
        decoded = [c for c in table.columns if c != target and _toolkit_spelling(c) == target]
        if decoded:
            message += (
                f" (SageMaker JSON-decodes hyperparameters: {decoded[0]!r} arrives as "
                f"{target!r}; write it as {json.dumps(decoded[0])!r} to keep it)"
            )
        raise TrainingError(message)
    unknown = sorted(set(categorical) - set(table.columns))
    if unknown:
        raise TrainingError(f"categorical columns not found: {', '.join(unknown)}")
    features = [c for c in table.columns if c != target]
    if not features:
        raise TrainingError("the data has no feature columns besides the target")
    numeric, strings, notes = [], [], []
    for column in features:
        if column in table.numbers and column not in categorical:
            numeric.append(column)
            continue
        cells = table.texts[column]
        present = ~missing_mask(cells, rule)
        parsed = number_mask(cells)[present]
        if column in categorical:
            strings.append(column)
        elif not parsed.size or parsed.all():
            numeric.append(column)
        elif parsed.mean() >= NUMERIC_SHARE:
            parse_numbers(cells, rule, column, table.where)  # raises, naming the first bad cell
        else:
            strings.append(column)
            bare = stripped(cells).filter(pa.array(present))
            thousands = to_numpy(pc.match_substring_regex(bare, f"^(?:{_THOUSANDS})$"))
            if thousands.any() and (parsed | thousands).mean() >= NUMERIC_SHARE:
                example = str(cells.filter(pa.array(present))[int(np.argmax(thousands))])
                notes.append(
                    f"{column}: numbers with thousands separators (like {example!r}) read as "
                    "categories; remove the separators to read them as numbers"
                )
    for column in strings:
        notes.extend(_category_notes(column, table.texts[column], rule))
    labels = table.texts[target]
    missing = missing_mask(labels, rule)
    if missing.any():
        index = int(np.argmax(missing))
        token = str(labels[index]).strip(_BLANK)
        hint = (
            f" ({token!r} is a missing-value token; set missing_values to change that)"
            if token
            else ""
        )
        raise TrainingError(
            f"target column {target!r} has missing values (first at {table.where(index)})" + hint
        )
    numbers = number_mask(labels)
    if task == "auto":
        if not numbers.all():
            task = "classification"
        else:
            values = float64(stripped(labels), numbers)
            integral = bool(np.all(values == np.round(values)))
            few = len(np.unique(values)) <= MAX_AUTO_CLASSES
            task = "classification" if integral and few else "regression"
    if task == "regression" and not numbers.all():
        bad = str(labels[int(np.argmin(numbers))])
        raise TrainingError(f"regression target {target!r} has a non-numeric value {bad!r}")
    for note in notes:
        print(f"warning: {note}", flush=True)
    return Schema(numeric, strings, features, task, rule=rule, warnings=notes)


def _category_notes(column: str, cells: pa.ChunkedArray, rule: ValueRule) -> list[str]:
    """What the log and manifest say about a categorical column: tokens read as missing."""
    bare = stripped(cells)
    tokens = bare.filter(is_token(bare, rule))
    counted = pc.value_counts(tokens).to_pylist()
    return [
        f"{column}: {item['counts']} cells {item['values']!r} read as missing"
        for item in sorted(counted, key=lambda item: item["values"])
    ]


def choose_categories(X: pd.DataFrame, schema: Schema, max_categories: int) -> None:
    """Pick each categorical feature's one-hot categories (the most frequent ones).

    skl2onnx cannot convert OneHotEncoder's own infrequent-category bucket, so the bucket is
    made here: categories beyond ``max_categories`` get no column and encode as all zeros,
    as an unseen category does. Warnings go to the log and the manifest.
    """
    for column in schema.categorical:
        counts = X[column].value_counts(sort=False)
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        present = int(counts.drop(MISSING_CATEGORY, errors="ignore").sum())
        distinct = len(counts.drop(MISSING_CATEGORY, errors="ignore"))
        notes = []
        if distinct == present >= ID_LIKE_MIN_ROWS:
            notes.append(f"{column}: every one of its {present} values is different (an id?)")
        kept = ranked[:max_categories]
        if len(ranked) > max_categories:
            rest = sum(n for _, n in ranked[max_categories:])
            notes.append(
                f"{column}: {len(ranked)} categories; the {max_categories} most frequent are "
                f"one-hot encoded and the other {len(ranked) - max_categories} ({rest} rows) "
                "share the 'other' encoding (max_categories)"
            )
        for note in notes:
            print(f"warning: {note}", flush=True)
        schema.warnings.extend(notes)
        schema.categories[column] = sorted(str(value) for value, _ in kept)


def prepare(
    table: Table | pd.DataFrame, schema: Schema, target: str
) -> tuple[pd.DataFrame, np.ndarray]:
    """Features typed as the ONNX graph takes them (float32 with NaN, strings with '') and y.

    The numeric features share one float32 block (no copy when the reader made it); the
    categorical ones are inserted at their CSV positions.
    """
    table = table if isinstance(table, Table) else Table.of_frame(table)
    block = numeric_block(table, schema)
    X = pd.DataFrame(block.T, columns=pd.Index(schema.numeric, dtype=object), copy=False)
    for position, column in enumerate(schema.features):
        if column in schema.categorical:
            cells = table.texts[column]
            missing = pa.array(missing_mask(cells, schema.rule))
            values = pc.if_else(missing, MISSING_CATEGORY, cells)
            X.insert(position, column, values.to_numpy(zero_copy_only=False).astype(object))
    bare = stripped(table.texts[target])
    if schema.task == "regression":
        return X, parse_numbers(bare, schema.rule, target, table.where)
    numbers = number_mask(bare)
    if numbers.all():
        values = float64(bare, numbers)
        if np.all(values == np.round(values)):
            return X, values.astype(np.int64)
    return X, bare.to_numpy(zero_copy_only=False).astype(str)


def numeric_block(table: Table, schema: Schema) -> np.ndarray:
    """The numeric features' float32 values as one C-contiguous (features, rows) block: the
    reader's own when it read exactly these columns, else assembled (parsing text columns)."""
    if list(table.numbers) == schema.numeric and table.block is not None:
        return table.block
    block = np.empty((len(schema.numeric), table.rows), dtype=np.float32)
    for index, column in enumerate(schema.numeric):
        values = table.numbers.get(column)
        if values is None:
            values = parse_numbers(table.texts[column], schema.rule, column, table.where)
        block[index] = values
    return block


def split(
    X: pd.DataFrame, y: np.ndarray, task: str, fraction: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray, np.ndarray]:
    """A seeded hold-out, stratified for classification."""
    stratify = None
    if task == "classification":
        counts = Counter(y.tolist())
        rare = sorted(str(label) for label, n in counts.items() if n < 2)
        if rare:
            raise TrainingError(
                f"class {', '.join(rare)} has only one row; each class needs "
                "at least two to hold some out for validation"
            )
        stratify = y
    try:
        X_train, X_valid, y_train, y_valid = train_test_split(
            X, y, test_size=fraction, random_state=seed, stratify=stratify
        )
    except ValueError as error:
        raise TrainingError(f"cannot hold out validation rows: {error}") from None
    return X_train, X_valid, y_train, y_valid


def input_digests(train: Table, validation: Table | None) -> dict[str, str]:
    """The sha256 of every input file, keyed ``train/<file>`` and ``validation/<file>``."""
    files = {f"train/{k}": v for k, v in train.files.items()}
    if validation is not None:
        files.update({f"validation/{k}": v for k, v in validation.files.items()})
    return files


def combined_digest(files: dict[str, str]) -> str:
    """One sha256 over every input file's digest (sorted ``name=sha256`` lines)."""
    lines = "\n".join(f"{k}={v}" for k, v in sorted(files.items()))
    return hashlib.sha256(lines.encode()).hexdigest()
