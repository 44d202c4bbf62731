"""The training job's reader before the columnar one (training_jobs/data.py at 92edeae),
frozen: the oracle the differential tests compare the columnar reader with, cell for cell
and model for model. Not used by the job."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from onnxkit.contract.layout import sha256_file
from onnxkit.contract.values import (
    DEFAULT_MISSING_TOKENS,
    FLOAT32_MAX,
    NUMBER_PATTERN,
    ValueRule,
    number_problem,
)
from training_jobs.errors import TrainingError

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


@dataclass
class Dataset:
    """A table read from a channel: every cell as its text, verbatim, and the file digests."""

    frame: pd.DataFrame
    files: dict[str, str]  # relative file name -> sha256


def _read_csv_text(path: Path, name: str, label: str) -> pd.DataFrame:
    """One CSV file, header and cells as text; the header row is read here, not by pandas.

    No NA handling by pandas (the contract's rule decides what is missing), no stripping
    (a category is its text verbatim), and no renaming of duplicate names to ``x.1``.
    """
    try:
        raw = pd.read_csv(
            path, dtype=str, header=None, keep_default_na=False, na_filter=False, encoding="utf-8"
        )
    except pd.errors.EmptyDataError:
        raise TrainingError(f"{name} file {label} is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        reason = str(error).strip().splitlines()[-1]
        raise TrainingError(f"{name} file {label} is not a readable CSV: {reason}") from None
    header = [str(cell) for cell in raw.iloc[0]]
    for column, count in Counter(header).items():
        if count > 1:
            raise TrainingError(
                f"{name} file {label}: column name {column!r} appears {count} times in the "
                "header; column names must be unique"
            )
    if any(not column.strip(_BLANK) for column in header):
        raise TrainingError(f"{name} file {label} needs a header row with non-empty names")
    frame = raw.iloc[1:].reset_index(drop=True)
    frame.columns = pd.Index(header, dtype=object)
    return frame.fillna("")


# Reading a CSV as text, inferring the schema and preparing the features peaks at about this
# many bytes of memory per byte of CSV, plus a base: measured with 50 numeric columns,
# 23 MB -> 467 MiB and 92 MB -> 1,224 MiB (11 bytes a byte, 214 MiB base), rounded up.
MEMORY_PER_CSV_BYTE = 12
BASE_MEMORY = 256 << 20


def csv_size(path: Path) -> int:
    """The bytes of CSV text in a file: its size, or a gzip file's uncompressed size (ISIZE,
    the last 4 bytes: exact below 4 GiB, which is where it matters least)."""
    size = path.stat().st_size
    if path.suffix.lower() != ".gz" or size < 4:
        return size
    with path.open("rb") as handle:
        handle.seek(-4, 2)
        return max(size, int.from_bytes(handle.read(4), "little"))


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


def channel_files(channel: str | None, name: str) -> tuple[Path, list[Path]]:
    """A channel's root and its CSV files (recursively, sorted by name)."""
    if not channel:
        raise TrainingError(f"no {name} channel: set SM_CHANNEL_{name.upper()} or --{name}")
    root = Path(channel)
    if not root.exists():
        raise TrainingError(f"{name} channel {root} does not exist")
    paths = (
        [root]
        if root.is_file()
        else sorted(
            p
            for p in root.rglob("*")
            if p.is_file() and p.suffix.lower() in {".csv", ".gz"} and not p.name.startswith(".")
        )
    )
    if not paths:
        raise TrainingError(f"{name} channel {root} has no CSV files")
    return root, paths


def read_channel(channel: str | None, name: str) -> Dataset:
    """Concatenate every CSV file of a channel directory (recursively, sorted by name)."""
    root, paths = channel_files(channel, name)
    frames: list[pd.DataFrame] = []
    files: dict[str, str] = {}
    header: list[str] | None = None
    sources: list[tuple[str, int, int]] = []
    for path in paths:
        label = path.name if root.is_file() else str(path.relative_to(root))
        frame = _read_csv_text(path, name, label)
        if header is None:
            header = list(frame.columns)
        elif list(frame.columns) != header:
            raise TrainingError(
                f"{name} file {label} has columns {list(frame.columns)}, "
                f"expected {header} as in the first file"
            )
        sources.append((label, sum(len(f) for f in frames), len(frame)))
        frames.append(frame)
        files[label] = sha256_file(path)
    data = pd.concat(frames, ignore_index=True)
    if data.empty:
        raise TrainingError(f"{name} channel {root} has a header but no rows")
    # Where each file's rows start, so that errors name the file and its line.
    data.attrs["sources"] = sources if len(sources) > 1 else []
    return Dataset(data, files)


def _where(frame: pd.DataFrame, index: Any) -> str:
    """``row N`` (the file's line, header = 1), with the file's name when there are several."""
    position = int(index)
    for label, start, rows in frame.attrs.get("sources", []):
        if start <= position < start + rows:
            return f"{label} row {position - start + 2}"
    return f"row {position + 2}"


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


def _texts(column: pd.Series) -> pd.Series:
    # Frames built in code may hold NaN/None for missing; a CSV read here never does.
    return column.fillna("").astype(str)


def missing_mask(column: pd.Series, rule: ValueRule) -> pd.Series:
    """Cells the contract reads as missing (``ValueRule.is_missing``, vectorized)."""
    stripped = _texts(column).str.strip(_BLANK)
    return (stripped == "") | stripped.isin(rule.missing_tokens)


def number_mask(column: pd.Series) -> pd.Series:
    """Cells whose text is a number in the contract's grammar (range not checked)."""
    return _texts(column).str.strip(_BLANK).str.fullmatch(NUMBER_PATTERN).fillna(False)


def parse_numbers(column: pd.Series, rule: ValueRule, name: str, frame: pd.DataFrame) -> pd.Series:
    """A numeric column as ``ValueRule.number`` reads it (NaN for missing), vectorized.

    Raises TrainingError naming the first invalid cell's row, column and text.
    """
    texts = _texts(column)
    readable = ~missing_mask(texts, rule) & number_mask(texts)
    values = pd.Series(np.nan, index=texts.index, dtype=np.float64)
    # float() per cell, as ValueRule.number does (numpy's str -> float64 cast calls it).
    values[readable] = texts[readable].str.strip(_BLANK).to_numpy(dtype=object).astype(np.float64)
    bad = ~missing_mask(texts, rule) & ~readable
    out_of_range = readable & ~(values.abs() <= FLOAT32_MAX)
    problems = bad | out_of_range
    if problems.any():
        index = problems.idxmax()
        where, text = _where(frame, index), texts[index]
        if bad[index]:
            hint = _not_a_number_hint(text, rule)
            raise TrainingError(f"column {name!r} {where}: {text!r} is not a number{hint}")
        problem = number_problem(float(values[index]))
        raise TrainingError(f"column {name!r} {where}: {text!r}: {problem}")
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
    frame: pd.DataFrame,
    target: str,
    task: str,
    categorical: Sequence[str],
    rule: ValueRule | None = None,
) -> Schema:
    """Decide numeric vs categorical for each column and classification vs regression."""
    rule = rule or ValueRule()
    if target not in frame.columns:
        message = (
            f"target column {target!r} not found; columns are {', '.join(map(str, frame.columns))}"
        )
        decoded = [c for c in frame.columns if c != target and _toolkit_spelling(c) == target]
        if decoded:
            message += (
                f" (SageMaker JSON-decodes hyperparameters: {decoded[0]!r} arrives as "
                f"{target!r}; write it as {json.dumps(decoded[0])!r} to keep it)"
            )
        raise TrainingError(message)
    unknown = sorted(set(categorical) - set(frame.columns))
    if unknown:
        raise TrainingError(f"categorical columns not found: {', '.join(unknown)}")
    features = [c for c in frame.columns if c != target]
    if not features:
        raise TrainingError("the data has no feature columns besides the target")
    numeric, strings, notes = [], [], []
    for column in features:
        texts = _texts(frame[column])
        present = texts[~missing_mask(texts, rule)]
        parsed = number_mask(present)
        if column in categorical:
            strings.append(column)
        elif present.empty or parsed.all():
            numeric.append(column)
        elif parsed.mean() >= NUMERIC_SHARE:
            parse_numbers(texts, rule, column, frame)  # raises, naming the first bad cell
        else:
            strings.append(column)
            thousands = present.str.strip(_BLANK).str.fullmatch(_THOUSANDS)
            if thousands.any() and (parsed | thousands).mean() >= NUMERIC_SHARE:
                example = present[thousands].iloc[0]
                notes.append(
                    f"{column}: numbers with thousands separators (like {example!r}) read as "
                    "categories; remove the separators to read them as numbers"
                )
    for column in strings:
        notes.extend(_category_notes(column, _texts(frame[column]), rule))
    labels = _texts(frame[target])
    missing = missing_mask(labels, rule)
    if missing.any():
        index = missing.idxmax()
        token = labels[index].strip(_BLANK)
        hint = (
            f" ({token!r} is a missing-value token; set missing_values to change that)"
            if token
            else ""
        )
        raise TrainingError(
            f"target column {target!r} has missing values (first at {_where(frame, index)})" + hint
        )
    numbers = number_mask(labels)
    if task == "auto":
        if not numbers.all():
            task = "classification"
        else:
            values = labels.str.strip(_BLANK).to_numpy(dtype=object).astype(np.float64)
            integral = bool(np.all(values == np.round(values)))
            few = len(np.unique(values)) <= MAX_AUTO_CLASSES
            task = "classification" if integral and few else "regression"
    if task == "regression" and not numbers.all():
        bad = labels[~numbers].iloc[0]
        raise TrainingError(f"regression target {target!r} has a non-numeric value {bad!r}")
    for note in notes:
        print(f"warning: {note}", flush=True)
    return Schema(numeric, strings, features, task, rule=rule, warnings=notes)


def _category_notes(column: str, texts: pd.Series, rule: ValueRule) -> list[str]:
    """What the log and manifest say about a categorical column: tokens read as missing."""
    stripped = texts.str.strip(_BLANK)
    tokens = stripped[stripped.isin(rule.missing_tokens)]
    return [
        f"{column}: {count} cells {token!r} read as missing"
        for token, count in sorted(Counter(tokens.tolist()).items())
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


def prepare(frame: pd.DataFrame, schema: Schema, target: str) -> tuple[pd.DataFrame, np.ndarray]:
    """Features typed as the ONNX graph takes them (float32 with NaN, strings with '') and y."""
    columns: dict[str, pd.Series] = {}
    for column in schema.features:
        if column in schema.numeric:
            columns[column] = parse_numbers(frame[column], schema.rule, column, frame).astype(
                np.float32
            )
        else:
            texts = _texts(frame[column])
            columns[column] = texts.where(~missing_mask(texts, schema.rule), MISSING_CATEGORY)
    # One frame from all the columns at once: inserting them one by one fragments it (pandas
    # warns and slows down past about a hundred columns).
    X = pd.DataFrame(columns, index=frame.index)
    labels = _texts(frame[target]).str.strip(_BLANK)
    if schema.task == "regression":
        return X, parse_numbers(labels, schema.rule, target, frame).to_numpy(dtype=np.float64)
    if number_mask(labels).all():
        values = labels.to_numpy(dtype=object).astype(np.float64)
        if np.all(values == np.round(values)):
            return X, values.astype(np.int64)
    return X, labels.to_numpy(dtype=object).astype(str)


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


def input_digests(train: Dataset, validation: Dataset | None) -> dict[str, str]:
    """The sha256 of every input file, keyed ``train/<file>`` and ``validation/<file>``."""
    files = {f"train/{k}": v for k, v in train.files.items()}
    if validation is not None:
        files.update({f"validation/{k}": v for k, v in validation.files.items()})
    return files


def combined_digest(files: dict[str, str]) -> str:
    """One sha256 over every input file's digest (sorted ``name=sha256`` lines)."""
    lines = "\n".join(f"{k}={v}" for k, v in sorted(files.items()))
    return hashlib.sha256(lines.encode()).hexdigest()
