"""Turn a request's instances into ONNX Runtime feeds, or into a precise 400.

Instances are rows: a list of values in signature order, or an object keyed by feature name.
The fast path checks whole columns with C-level builtins (``set(map(type, column))``) and
converts each column with one ``numpy.array`` call; only a column that fails the check is
walked value by value, to say exactly which instance and feature are wrong.

Large all-numeric bodies (JSON list instances, or CSV) skip Python objects altogether: simdjson
parses them straight into a float64 buffer (``FeedBuilder.json_matrix`` / ``csv_matrix``). It
declines anything but rows of numbers, and those bodies take the path above, unchanged.

What is missing and what is a number is the contract's rule (:mod:`onnxkit.contract.values`),
with the missing tokens of the served model's manifest: a CSV field or a JSON string that is
blank or a missing token is a missing value, in numeric and categorical features alike; a CSV
number follows the contract's grammar (not ``float()``, which takes ``1_000`` and non-ASCII
digits). The fast paths only ever see plain numbers, which both rules read alike.
"""

from __future__ import annotations

import csv
import io
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from typing import Any, cast

import numpy as np
import orjson

from onnxkit.contract.values import FLOAT32_MAX, ValueProblem, ValueRule, number_problem

from .errors import MAX_DETAILS, ApiError, detail

# What a categorical input receives for a missing value (see FeatureSpec.missing_category).
MISSING_CATEGORY = ""

DEFAULT_RULE = ValueRule()  # the contract's default tokens (a manifest before 1.1)
_NUMBER_TYPES: frozenset[type] = frozenset({int, float})
_NULLABLE_NUMBER_TYPES: frozenset[type] = frozenset({int, float, type(None)})
_STRING_TYPES: frozenset[type] = frozenset({str})
_NULLABLE_STRING_TYPES: frozenset[type] = frozenset({str, type(None)})


@dataclass(frozen=True)
class FeatureSpec:
    """What the predictor needs of one manifest feature."""

    name: str
    onnx_input: str
    numeric: bool
    nullable: bool
    # How this feature's text is read: the manifest's missing tokens (default: the contract's).
    rule: ValueRule = DEFAULT_RULE

    @property
    def allowed_types(self) -> frozenset[type]:
        """Python types (after JSON parsing) accepted as this feature's values."""
        if self.numeric:
            return _NULLABLE_NUMBER_TYPES if self.nullable else _NUMBER_TYPES
        return _NULLABLE_STRING_TYPES if self.nullable else _STRING_TYPES


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _value_problem(spec: FeatureSpec, value: Any) -> str | None:
    """Why one value cannot feed this feature, or None when it can."""
    kind = type(value)
    if kind is str and spec.rule.is_missing(value):
        if spec.nullable:
            return None
        return f"missing value ({value!r}), and the model does not impute this feature"
    if kind in spec.allowed_types:
        if spec.numeric and value is not None:
            return number_problem(value)
        return None
    if value is None:
        return "missing value (null), and the model does not impute this feature"
    if spec.numeric:
        return f"expected a number, got {_describe(value)}"
    return f"expected a category (string), got {_describe(value)}"


def _read_missing(
    spec: FeatureSpec, values: Sequence[Any], kinds: set[type] | None = None
) -> tuple[Sequence[Any], set[type]]:
    """``values`` with every string the rule reads as missing (blank, a token) made None, or
    MISSING_CATEGORY for a categorical feature the model imputes; and their types."""
    if kinds is None:
        kinds = set(map(type, values))
    if str not in kinds:
        return values, kinds
    is_missing = spec.rule.is_missing
    if kinds <= _NULLABLE_STRING_TYPES:
        # Per distinct value: a categorical column holds few, and set() runs in C.
        imputed = not spec.numeric and spec.nullable
        # "" already is what such a feature receives for a missing value: no copy for it.
        missing = {v for v in set(values) if (v or not imputed) and v is not None and is_missing(v)}
        if not missing:
            return values, kinds
        if imputed:
            return [MISSING_CATEGORY if v in missing else v for v in values], kinds
        values = [None if v in missing else v for v in values]
        return values, set(map(type, values))
    values = [None if type(v) is str and is_missing(v) else v for v in values]
    return values, set(map(type, values))


def _too_many(details: list[dict[str, Any]]) -> bool:
    return len(details) >= MAX_DETAILS


def _invalid(details: list[dict[str, Any]]) -> ApiError:
    # Collection stops at MAX_DETAILS: a 1000-row body of garbage is not walked to the end.
    if len(details) >= MAX_DETAILS:
        message = f"at least {MAX_DETAILS} problems in instances (first {MAX_DETAILS} listed)"
    else:
        message = f"{len(details)} problem{'s' if len(details) > 1 else ''} in instances"
    return ApiError(400, "invalid_instances", message, details[:MAX_DETAILS])


def rows_from_instances(
    instances: Sequence[Any], features: Sequence[FeatureSpec]
) -> list[tuple[Any, ...]]:
    """Each instance as a tuple in signature order; list and object instances may be mixed."""
    n_features = len(features)
    kinds = set(map(type, instances))
    if kinds == {list} and set(map(len, instances)) == {n_features}:
        return instances  # type: ignore[return-value]  # lists index like tuples
    names = [spec.name for spec in features]
    name_set = set(names)
    if kinds == {dict} and all(instance.keys() == name_set for instance in instances):
        getter = itemgetter(*names)
        if n_features == 1:
            return [(value,) for value in map(getter, instances)]
        return list(map(getter, instances))

    rows: list[tuple[Any, ...]] = []
    details: list[dict[str, Any]] = []
    for index, instance in enumerate(instances):
        if isinstance(instance, list):
            if len(instance) != n_features:
                details.append(
                    detail(index, None, f"expected {n_features} values, got {len(instance)}")
                )
            rows.append(tuple(instance))
        elif isinstance(instance, dict):
            keys = instance.keys()
            for key in keys - name_set:
                details.append(detail(index, str(key), "unknown feature"))
            for name in names:
                if name not in instance:
                    details.append(detail(index, name, "missing feature (send null if unknown)"))
            rows.append(tuple(instance.get(name) for name in names))
        else:
            details.append(
                detail(
                    index,
                    None,
                    f"an instance is a list of {n_features} values or an object keyed by "
                    f"feature name, not {_describe(instance)}",
                )
            )
        if _too_many(details):
            break
    if details:
        raise _invalid(details)
    return rows


# Bytes a JSON body of numbers, nulls and arrays is made of (``null`` spells n, u, l).
_NUMERIC_JSON_BYTES = b"0123456789.eE+-,[] \t\r\nnul"
_ENVELOPE = b'{"instances":}'.translate(None, _NUMERIC_JSON_BYTES)


def numbers_only(raw: bytes) -> bool:
    """True when a valid JSON body ``{"instances": ...}`` holds only numbers, nulls and lists.

    Deleting those bytes must leave exactly the envelope: a string needs a quote, a boolean a
    ``t`` or ``f``, an object a brace. ~0.1 ms for a 1000-row body, against ~0.7 ms for
    checking the type of each parsed value.
    """
    return raw.translate(None, _NUMERIC_JSON_BYTES) == _ENVELOPE


def _numeric_column(values: Sequence[Any]) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):
        return np.array(values, dtype=np.float32).reshape(-1, 1)


def _string_column(values: Sequence[Any]) -> np.ndarray:
    column = np.array(values, dtype=object).reshape(-1, 1)
    if None in values:
        column[column == None] = MISSING_CATEGORY  # noqa: E711  # elementwise comparison
    return column


class FeedBuilder:
    """Builds ONNX Runtime inputs for one signature; what the rows do not change is computed once.

    One ``[N, 1]`` array per feature from rows in signature order. ``numbers_only`` promises
    that every value is a number or null (see :func:`numbers_only`), which lets an all-numeric
    signature skip the per-value type check.
    """

    def __init__(self, features: Sequence[FeatureSpec]) -> None:
        self.features = tuple(features)
        self.inputs = [spec.onnx_input for spec in self.features]
        self.all_numeric = all(spec.numeric for spec in self.features)
        self.all_nullable = all(spec.nullable for spec in self.features)
        self.allowed = _NULLABLE_NUMBER_TYPES if self.all_nullable else _NUMBER_TYPES
        self.required = np.array([not spec.nullable for spec in self.features])
        self._local = threading.local()  # per-thread one-row buffers (see _one_row)

    def __call__(
        self, rows: Sequence[Sequence[Any]], numbers_only: bool = False
    ) -> dict[str, np.ndarray]:
        """The feed, or an ApiError naming every bad value (up to MAX_DETAILS)."""
        if self.all_numeric:
            matrix = self._matrix(rows, numbers_only)
            feed = None if matrix is None else self.from_matrix(matrix)
            if feed is not None:
                return feed
        return self._by_column(rows)

    def _matrix(self, rows: Sequence[Sequence[Any]], numbers_only: bool) -> np.ndarray | None:
        """One type check and one conversion for the whole matrix; None -> the careful path."""
        if not numbers_only and not set(map(type, chain.from_iterable(rows))) <= self.allowed:
            return None
        try:
            matrix = np.array(rows, dtype=np.float64)  # null -> NaN
        except (ValueError, TypeError):  # ragged or nested rows
            return None
        if matrix.ndim != 2 or matrix.shape[1] != len(self.features):
            return None
        return matrix

    def from_matrix(self, matrix: np.ndarray) -> dict[str, np.ndarray] | None:
        """The feed of a float64 ``[N, F]`` matrix (NaN = null) whose values all pass, or None
        (the careful path then names each bad value)."""
        # Elementwise: NaN (a null) compares False, where max() would turn NaN and hide the rest.
        if (np.abs(matrix) > FLOAT32_MAX).any():
            return None
        if not self.all_nullable and np.isnan(matrix[:, self.required]).any():
            return None
        n_rows, n_features = matrix.shape
        if n_rows == 1:
            return self._one_row(matrix[0])
        # Transposed and C-ordered, so every input is a contiguous [N, 1] view: no copies.
        columns = matrix.T.astype(np.float32, order="C").reshape(n_features, n_rows, 1)
        return dict(zip(self.inputs, columns, strict=True))

    def _one_row(self, row: np.ndarray) -> dict[str, np.ndarray]:
        """A one-row feed in this thread's buffer, whose [1, 1] views are made once: making F
        views costs more than a one-row request's checks. Valid until the thread's next one."""
        try:
            buffer, feed = self._local.one_row
        except AttributeError:
            buffer = np.empty((len(self.inputs), 1, 1), dtype=np.float32)
            feed = dict(zip(self.inputs, buffer, strict=True))
            self._local.one_row = (buffer, feed)
        buffer[:, 0, 0] = row  # float64 -> float32, rounding as astype does
        return feed

    def is_one_row_feed(self, feed: dict[str, np.ndarray]) -> bool:
        """Whether ``feed`` is this thread's one-row buffer (which a session may bind once)."""
        cached = getattr(self._local, "one_row", None)
        return cached is not None and feed is cached[1]

    def json_matrix(self, raw: bytes) -> np.ndarray | None:
        """The float64 ``[N, F]`` matrix of a body ``{"instances": [[numbers], ...]}`` of list
        instances with F numbers each, parsed by simdjson straight into a buffer (no Python
        float per value); None for anything else, which the orjson path then parses and
        explains. Only for all-numeric signatures."""
        if not self.all_numeric or raw.startswith(_UTF8_BOM):  # simdjson skips it, orjson not
            return None
        matrix = _simd_matrix(raw, len(self.features), "instances")
        # Each "[" opens the instances or a row: nothing nested (as_buffer would flatten it).
        if matrix is None or raw.count(b"[") != len(matrix) + 1:
            return None
        return matrix

    def csv_matrix(self, raw: bytes) -> np.ndarray | None:
        """The float64 ``[N, F]`` matrix of a clean all-numeric CSV body (an optional header of
        feature names is skipped), or None when anything needs :func:`rows_from_csv`."""
        if not self.all_numeric:
            return None
        body = _numeric_csv_body(raw, self.features, strict_parser=True)
        if body is None:
            return None
        return _simd_matrix(b"[[" + body.replace(b"\n", b"],[") + b"]]", len(self.features), None)

    def _by_column(self, rows: Sequence[Sequence[Any]]) -> dict[str, np.ndarray]:
        features = self.features
        columns = list(zip(*rows, strict=True)) if len(features) > 1 else [[r[0] for r in rows]]
        feed = {}
        details: list[dict[str, Any]] = []
        for spec, sent in zip(features, columns, strict=True):
            values, kinds = _read_missing(spec, sent)
            if kinds <= spec.allowed_types:
                if not spec.numeric:
                    feed[spec.onnx_input] = _string_column(values)
                    continue
                array = _numeric_column(values)
                if not np.isinf(array).any():
                    feed[spec.onnx_input] = array
                    continue
            for index, value in enumerate(sent):
                problem = _value_problem(spec, value)
                if problem:
                    details.append(detail(index, spec.name, problem))
                    if _too_many(details):
                        raise _invalid(details)
        if details:
            raise _invalid(details)
        return feed


def build_feed(
    rows: Sequence[Sequence[Any]], features: Sequence[FeatureSpec], numbers_only: bool = False
) -> dict[str, np.ndarray]:
    """ONNX Runtime inputs for rows in signature order (see :class:`FeedBuilder`)."""
    return FeedBuilder(features)(rows, numbers_only)


# Bytes of a CSV body of numbers only: no quotes, letters (but e/E) or empty-field tricks.
_NUMERIC_CSV_BYTES = b"0123456789.eE+-, \t\r\n"


def _numeric_csv_body(
    raw: bytes, features: Sequence[FeatureSpec], strict_parser: bool = False
) -> bytes | None:
    """The rows of a CSV body made of numbers only, header stripped, lines ending in ``\\n``.

    With ``strict_parser`` (simdjson's as_buffer, which refuses anything but numbers) only
    brackets need ruling out, as nesting would flatten; a byte-by-byte alphabet check costs
    as much as the parse's own validation of a large body."""
    if not all(spec.numeric for spec in features):
        return None
    if b"\r" in raw:
        if b"\r" in raw.replace(b"\r\n", b""):  # a bare CR: the csv module's own 400
            return None
        raw = raw.replace(b"\r\n", b"\n")
    # Only line breaks are trimmed: csv reads a line of spaces as a record (and refuses it).
    body = raw.strip(b"\n")
    first, _, rest = body.partition(b"\n")
    if first.split(b",") == [spec.name.encode() for spec in features]:
        body = rest.strip(b"\n")
    if not body:
        return None
    if strict_parser:
        if b"[" in body or b"]" in body:
            return None
    elif body.translate(None, _NUMERIC_CSV_BYTES):
        return None
    return body


def numeric_csv_rows(raw: bytes, features: Sequence[FeatureSpec]) -> list[list[Any]] | None:
    """Rows of a clean all-numeric CSV body, parsed as JSON arrays (~10x faster than csv +
    float()); None when anything needs :func:`rows_from_csv` and its precise errors."""
    body = _numeric_csv_body(raw, features)
    if body is None:
        return None
    try:
        rows = orjson.loads(b"[[" + body.replace(b"\n", b"],[") + b"]]")
    except orjson.JSONDecodeError:  # empty fields, "+1", ".5", "1e999": the careful path
        return None
    if set(map(len, rows)) != {len(features)}:
        return None
    return rows


# Bodies below this size parse faster with orjson than with a simdjson document.
SIMDJSON_MIN_BYTES = 4096
_UTF8_BOM = b"\xef\xbb\xbf"
_parsers = threading.local()  # a simdjson parser is reusable, but not across threads


def _simd_matrix(document: bytes, n_features: int, key: str | None) -> np.ndarray | None:
    """float64 ``[N, F]`` from a JSON document whose array (the value of its only key ``key``,
    else the root) holds N >= 1 rows of F numbers; None for anything else, simdjson's refusals
    included (invalid JSON, a null, a number beyond double range, an integer beyond 64 bits).
    Rows holding arrays are the caller's to rule out: as_buffer flattens them."""
    try:
        buffer, n_rows = _simd_buffer(document, n_features, key)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, RuntimeError):
        return None
    if not n_rows:
        return None
    matrix = np.frombuffer(buffer, dtype=np.float64)
    if matrix.size != n_rows * n_features:
        return None
    return matrix.reshape(n_rows, n_features)


def _simdjson() -> Any:
    """The simdjson module, or None where pysimdjson has no wheel (CPython 3.14 on arm64, the
    function's runtime, has none yet): large bodies then take the orjson path."""
    global _simdjson_module  # noqa: PLW0603  # imported once, on the first large body
    if _simdjson_module is False:
        try:
            import simdjson  # noqa: PLC0415  # only large bodies need it: no cold-start cost
        except ImportError:
            _simdjson_module = None
        else:
            _simdjson_module = simdjson
    return _simdjson_module


_simdjson_module: Any = False  # not looked for yet


def _simd_buffer(document: bytes, n_features: int, key: str | None) -> tuple[Any, int]:
    """The rows' numbers as a flat buffer of doubles and the number of rows (0: not rows of
    ``n_features``). The document's proxies die here, so the thread's parser is free again."""
    simdjson = _simdjson()
    if simdjson is None:
        return b"", 0
    parser = getattr(_parsers, "parser", None)
    if parser is None:
        parser = _parsers.parser = simdjson.Parser()
    parsed: Any = parser.parse(document)
    if key is not None:
        if not isinstance(parsed, simdjson.Object) or len(parsed) != 1:
            return b"", 0
        parsed = parsed.get(key)
    if not isinstance(parsed, simdjson.Array) or set(map(len, cast(Any, parsed))) != {n_features}:
        return b"", 0  # also an empty list: set() is not {n_features}
    return parsed.as_buffer(of_type="d"), len(parsed)


def rows_from_csv(text: str, features: Sequence[FeatureSpec]) -> list[tuple[Any, ...]]:
    """Rows from a ``text/csv`` body (an optional header of feature names is skipped).

    Fields are read with the contract's rule (:mod:`onnxkit.contract.values`): blank or a
    missing token is a missing value (None); a numeric field must be a plain number. A quote
    that never closes, or text after a closing quote, is a malformed body, not one long field.
    """
    names = [spec.name for spec in features]
    try:
        records = [
            record for record in csv.reader(io.StringIO(text, newline=""), strict=True) if record
        ]
    except csv.Error as error:
        raise ApiError(400, "invalid_body", f"the CSV body is malformed: {error}") from None
    if records and records[0] == names:
        records = records[1:]
    details: list[dict[str, Any]] = []
    n_features = len(features)
    indices = []
    for index, record in enumerate(records):
        if len(record) != n_features:
            details.append(detail(index, None, f"expected {n_features} values, got {len(record)}"))
            if _too_many(details):
                raise _invalid(details)
        else:
            indices.append(index)
    if details:  # the rows of the right length are still checked, for a complete answer
        records = [records[index] for index in indices]
    if not records:
        if details:
            raise _invalid(details)
        return []
    columns = list(zip(*records, strict=True))
    values = [
        _csv_numbers(spec, column, indices, details)
        if spec.numeric
        else _read_missing(spec, column)[0]
        for spec, column in zip(features, columns, strict=True)
    ]
    if details:
        details.sort(key=lambda entry: entry["instance"])
        raise _invalid(details)
    return list(zip(*values, strict=True))


# A column made of these characters only holds plain numbers and empty fields, where float()
# and the contract's number grammar agree exactly (no "_", "inf", "nan", non-ASCII digits).
_PLAIN_NUMBER_BYTES = b"0123456789.eE+-"


def _csv_numbers(
    spec: FeatureSpec,
    fields: Sequence[str],
    indices: Sequence[int],
    details: list[dict[str, Any]],
) -> list[float | None]:
    """A numeric CSV column read with the feature's rule; problems go to ``details``."""
    rule = spec.rule
    text = "".join(fields)
    if text.isascii() and not text.encode().translate(None, _PLAIN_NUMBER_BYTES):
        # Tokens that look like numbers ("-999") are the rule's, and checked first.
        tokens = rule.missing_tokens
        numbers: list[float | None]
        try:
            if any(not token.encode().translate(None, _PLAIN_NUMBER_BYTES) for token in tokens):
                numbers = [None if not f or f in tokens else float(f) for f in fields]
            else:
                numbers = [float(f) if f else None for f in fields]
        except ValueError:  # "1e", "--1": the careful loop below names them
            pass
        else:
            # filter(None, ...) drops the None (and zeros, which cannot exceed the bound).
            if max(map(abs, filter(None, numbers)), default=0.0) <= FLOAT32_MAX:
                return numbers
    parsed: list[float | None] = []
    for position, field in enumerate(fields):
        try:
            parsed.append(rule.number(field))
        except ValueProblem as problem:
            if len(details) < MAX_DETAILS:
                details.append(detail(indices[position], spec.name, str(problem)))
            parsed.append(None)
    return parsed


# A .npy header is a short Python literal; numpy's own default limit is 10000 bytes.
_NPY_MAX_HEADER = 10000
_NPY_KINDS = "fiu"  # floats as sent; integers cast (exact up to 2**53, then range-checked)


def _npy_refused(message: str, base64_hint: bool) -> ApiError:
    if base64_hint:
        # An API without application/x-npy among its binary media types hands over text.
        message += (
            " (the body did not arrive base64-encoded: is application/x-npy among the API's "
            "binary media types?)"
        )
    return ApiError(400, "invalid_npy", message)


def npy_matrix(raw: bytes, n_features: int, base64_hint: bool = False) -> np.ndarray:
    """The ``[N, F]`` matrix of an ``application/x-npy`` body (a NumPy .npy file holding a 2-D
    float array in signature order, NaN = missing), or a 400 ``invalid_npy``.

    Only the header is parsed in Python (numpy's own reader, a literal, never a pickle); the
    data is a zero-copy ``np.frombuffer`` view whose length must match the header exactly.
    Values are not checked here (see :meth:`FeedBuilder.npy_feed`).
    """
    stream = io.BytesIO(raw)
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            header = np.lib.format.read_array_header_1_0(stream, max_header_size=_NPY_MAX_HEADER)
        elif version == (2, 0):
            header = np.lib.format.read_array_header_2_0(stream, max_header_size=_NPY_MAX_HEADER)
        else:  # 3.0 only adds UTF-8 field names, which a plain float array never has
            raise _npy_refused(f"unsupported .npy format version {version}", base64_hint)
    except ApiError:
        raise
    except Exception as error:  # noqa: BLE001  # numpy's reader raises several kinds
        reason = " ".join(str(error).split())[:200]  # numpy quotes the padded header
        raise _npy_refused(f"the body is not a valid .npy file: {reason}", base64_hint) from None
    shape, fortran_order, dtype = header
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
        raise ApiError(
            400,
            "invalid_npy",
            f"unsupported .npy dtype {dtype.str!r}: send a plain float32 or float64 array "
            "(object, structured and pickled arrays are refused)",
        )
    if dtype.kind not in _NPY_KINDS:
        raise ApiError(
            400,
            "invalid_npy",
            f"unsupported .npy dtype {dtype.name!r}: send float32 or float64 (NaN = missing)",
        )
    if len(shape) != 2 or min(shape) < 0:
        raise ApiError(
            400,
            "invalid_npy",
            f"the .npy array must be 2-D [rows, {n_features}], got shape {tuple(shape)}",
        )
    n_rows, n_columns = shape
    if n_columns != n_features:
        raise ApiError(
            400,
            "invalid_npy",
            f"the .npy array has {n_columns} columns; the model takes {n_features} features "
            "(in signature order)",
        )
    offset = stream.tell()
    expected = n_rows * n_columns * dtype.itemsize  # Python ints: a lying shape cannot overflow
    if len(raw) - offset != expected:
        raise _npy_refused(
            f"the .npy data is {len(raw) - offset} bytes; its header promises {expected} "
            f"(shape {tuple(shape)}, {dtype.name}): truncated or padded",
            base64_hint,
        )
    flat = np.frombuffer(raw, dtype=dtype, count=n_rows * n_columns, offset=offset)
    if fortran_order:
        return flat.reshape(n_columns, n_rows).T
    return flat.reshape(n_rows, n_columns)


def npy_problems(matrix: np.ndarray, features: Sequence[FeatureSpec]) -> ApiError:
    """The 400 naming each value of a .npy matrix that :meth:`FeedBuilder.from_matrix` refused
    (infinite, beyond float32, or NaN where the model does not impute), up to MAX_DETAILS."""
    with np.errstate(invalid="ignore"):
        infinite = np.isinf(matrix)
        too_big = ~infinite & (np.abs(matrix) > FLOAT32_MAX)
    required = np.array([not spec.nullable for spec in features])
    missing = np.isnan(matrix) & required
    details: list[dict[str, Any]] = []
    # Row-major, so details come in instance order, as for JSON bodies.
    for index, column in np.argwhere(infinite | too_big | missing)[:MAX_DETAILS].tolist():
        if infinite[index, column]:
            problem = "number must be finite"
        elif too_big[index, column]:
            problem = f"number out of range (|x| <= {FLOAT32_MAX:.4g})"
        else:
            problem = "missing value (NaN), and the model does not impute this feature"
        details.append(detail(index, features[column].name, problem))
    if not details:  # from_matrix refuses nothing else; never a silent 200 if that changes
        raise AssertionError("a refused .npy matrix without a problem")
    return _invalid(details)
