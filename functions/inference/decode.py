"""Everything a request body can be, decoded into an ONNX Runtime feed or a precise 4xx.

One entry point, :func:`predict_feed`, takes the event (REST proxy 1.0, or payload 2.0 from an
HTTP API or a function URL: each carries ``headers``, ``body`` and ``isBase64Encoded`` alike),
the served signature's :class:`~.feed.FeedBuilder` and the limits, all as arguments. It picks
the media type (``application/json``, ``text/csv``, ``application/x-npy``), undoes base64,
enforces the body and instance limits, then takes the cheapest path that gives the same answer:

- ``application/x-npy``: a header parse and a zero-copy buffer view (:func:`npy_matrix`);
- large all-numeric JSON or CSV (:data:`SIMDJSON_MIN_BYTES` and up): simdjson parses straight
  into a float64 buffer (:func:`json_matrix`, :func:`csv_matrix`), declining anything but rows
  of numbers;
- everything else: orjson or the csv module, instances as lists in signature order or objects
  keyed by feature name (:func:`rows_from_instances`, :func:`rows_from_csv`), each problem
  named by instance and feature.

A CSV field is read with the contract's rule (:mod:`onnxkit.contract.values`): blank or a
missing token is a missing value; a number follows the contract's grammar (not ``float()``,
which takes ``1_000`` and non-ASCII digits). The fast paths only ever see plain numbers, which
both rules read alike.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import threading
from collections.abc import Callable, Mapping, Sequence
from functools import cache, partial
from operator import itemgetter
from typing import Any, cast

import numpy as np
import orjson

from onnxkit.contract.api import CSV, JSON, MAX_DETAILS, NPY, detail
from onnxkit.contract.values import FLOAT32_MAX, ValueProblem

from .errors import ApiError
from .feed import FeatureSpec, FeedBuilder, describe, invalid, npy_problems, read_missing, too_many

Feed = dict[str, np.ndarray]
UTF8_BOM = b"\xef\xbb\xbf"
# Bodies below this size parse faster with orjson than with a simdjson document.
SIMDJSON_MIN_BYTES = 4096


def predict_feed(
    event: Mapping[str, Any], builder: FeedBuilder, *, max_body_bytes: int, max_instances: int
) -> Feed:
    """The feed of a ``POST /predict`` event, or the ApiError that says what is wrong."""
    media = media_type(event)
    raw = body_bytes(event, max_body_bytes)
    if media == NPY:
        return _npy_feed(builder, raw, bool(event.get("isBase64Encoded")), max_instances)
    if media == CSV:
        # Spreadsheets save CSV with a byte-order mark; every CSV reader drops it (pandas too).
        raw = raw.removeprefix(UTF8_BOM)
    if len(raw) >= SIMDJSON_MIN_BYTES:
        feed = _fast_feed(builder, media, raw, max_instances)
        if feed is not None:
            return feed
    if media == CSV:
        return _csv_feed(builder, raw, max_instances)
    instances = instances_from_json(raw)
    check_count(len(instances), max_instances)
    return builder(rows_from_instances(instances, builder.features), numbers_only(raw))


def header(event: Mapping[str, Any], name: str) -> str | None:
    """A request header by lower-case name (API Gateway keeps the client's spelling)."""
    headers = event.get("headers") or {}
    for key, value in headers.items():
        if isinstance(key, str) and key.lower() == name:
            return value if isinstance(value, str) else None
    return None


def media_type(event: Mapping[str, Any]) -> str:
    """JSON, CSV or NPY from the Content-Type; a 415 for anything else."""
    content_type = header(event, "content-type")
    if content_type is None:
        return JSON  # curl and many clients omit it for JSON; anything explicit must match
    media = content_type.split(";", 1)[0].strip().lower()
    if media in (JSON, CSV, NPY):
        return media
    if media.startswith("application/") and media.endswith("+json"):
        return JSON
    raise ApiError(
        415,
        "unsupported_media_type",
        f"unsupported content type {media!r}; send application/json, text/csv or {NPY}",
    )


def body_bytes(event: Mapping[str, Any], limit: int) -> bytes:
    """The body's bytes (base64 undone), at most ``limit`` of them (a 413 above)."""
    body = event.get("body")
    if body is None:
        return b""
    if not isinstance(body, str):
        raise ApiError(400, "invalid_body", "the request body is not text")
    encoded = event.get("isBase64Encoded")
    if len(body) > (limit * 4 // 3 + 4 if encoded else limit):
        raise ApiError(413, "body_too_large", f"the body exceeds {limit} bytes")
    if encoded:
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(400, "invalid_body", "the body is not valid base64") from None
    else:
        raw = body.encode()
    if len(raw) > limit:
        raise ApiError(413, "body_too_large", f"the body exceeds {limit} bytes")
    return raw


def check_count(count: int, limit: int) -> None:
    """A 400 for no instances, a 413 for more than ``limit``."""
    if count == 0:
        raise ApiError(400, "invalid_body", "no instances: send at least one")
    if count > limit:
        raise ApiError(413, "too_many_instances", f"{count} instances; at most {limit} per call")


def instances_from_json(raw: bytes) -> list[Any]:
    """The ``instances`` list of a JSON body ``{"instances": [...]}``; a 400 otherwise."""
    if not raw.strip():
        raise ApiError(400, "invalid_json", 'empty body; send {"instances": [...]}')
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        # orjson, unlike the json module, rejects NaN/Infinity literals and out-of-range numbers.
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {error}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_body", 'the body must be a JSON object {"instances": [...]}')
    unknown = sorted(str(key) for key in body if key != "instances")
    if unknown:
        raise ApiError(
            400,
            "invalid_body",
            f'unknown field(s) {", ".join(unknown)}; the body is {{"instances": [...]}}',
        )
    instances = body.get("instances")
    if not isinstance(instances, list):
        raise ApiError(400, "invalid_body", '"instances" must be a list of instances')
    return instances


def _fast_feed(builder: FeedBuilder, media: str, raw: bytes, max_instances: int) -> Feed | None:
    """The feed of a large all-numeric body with nothing to explain, parsed without a Python
    object per value; None sends the body down the path that names every problem."""
    features = builder.features
    matrix = csv_matrix(raw, features) if media == CSV else json_matrix(raw, features)
    if matrix is None:
        return None
    check_count(len(matrix), max_instances)  # the same 413 the careful path gives
    return builder.from_matrix(matrix)


def _npy_feed(builder: FeedBuilder, raw: bytes, encoded: bool, max_instances: int) -> Feed:
    """The feed of an ``application/x-npy`` body: a header parse and a buffer view, then the
    same limits and value checks as a numeric JSON body."""
    if not builder.all_numeric:
        categorical = [spec.name for spec in builder.features if not spec.numeric]
        raise ApiError(
            415,
            "unsupported_media_type",
            f"{NPY} needs an all-numeric model; this one has categorical features "
            f"({', '.join(categorical)}): send application/json or text/csv",
        )
    matrix = npy_matrix(raw, len(builder.features), base64_hint=not encoded)
    if matrix.dtype not in (np.float32, np.float64):  # a tuple: dtypes compare by ==
        # Integers, float16 (whose own range would hide a too-large value), other byte orders.
        matrix = matrix.astype(np.float64)
    check_count(len(matrix), max_instances)
    feed = builder.from_matrix(matrix)
    if feed is None:
        raise npy_problems(matrix, builder.features)
    return feed


def _csv_feed(builder: FeedBuilder, raw: bytes, max_instances: int) -> Feed:
    """The feed of a CSV body: a clean all-numeric body parsed as JSON arrays, taken when every
    value passes; anything else, and any value to refuse, by the csv module with the contract's
    rule, whose errors name each bad cell in row order."""
    features = builder.features
    fast = numeric_csv_rows(raw, features)
    if fast is not None:
        check_count(len(fast), max_instances)
        feed = builder.numeric_feed(fast, numbers_only=True)
        if feed is not None:
            return feed
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_body", "the CSV body is not UTF-8") from None
    rows = rows_from_csv(text, features)
    check_count(len(rows), max_instances)
    return builder(rows)


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
            if not instance.keys() <= name_set:  # in the order sent, not a set's hash order
                details.extend(
                    detail(index, str(key), "unknown feature")
                    for key in instance
                    if key not in name_set
                )
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
                    f"feature name, not {describe(instance)}",
                )
            )
        if too_many(details):
            break
    if details:
        raise invalid(details)
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


def json_matrix(raw: bytes, features: Sequence[FeatureSpec]) -> np.ndarray | None:
    """The float64 ``[N, F]`` matrix of a body ``{"instances": [[numbers], ...]}`` of list
    instances with F numbers each, parsed by simdjson straight into a buffer (no Python float
    per value); None for anything else, which the orjson path then parses and explains. Only
    for all-numeric signatures."""
    if not all(spec.numeric for spec in features) or raw.startswith(UTF8_BOM):
        return None  # simdjson skips a BOM, orjson does not
    matrix = _simd_matrix(raw, len(features), "instances")
    # Each "[" opens the instances or a row: nothing nested (as_buffer would flatten it).
    if matrix is None or raw.count(b"[") != len(matrix) + 1:
        return None
    return matrix


def csv_matrix(raw: bytes, features: Sequence[FeatureSpec]) -> np.ndarray | None:
    """The float64 ``[N, F]`` matrix of a clean all-numeric CSV body (an optional header of
    feature names is skipped), or None when anything needs :func:`rows_from_csv`."""
    body = _numeric_csv_body(raw, features, strict_parser=True)
    if body is None:
        return None
    # Values beyond float32 ("1e40") pass here: the feed builder declines the matrix.
    return _simd_matrix(b"[[" + body.replace(b"\n", b"],[") + b"]]", len(features), None)


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
    return rows  # values beyond float32 ("1e40") pass here: the feed builder declines them


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


@cache  # imported once, on the first large body
def _simdjson() -> Any:
    """The simdjson module, or None where pysimdjson has no wheel (CPython 3.14 on arm64, the
    function's runtime, has none yet): large bodies then take the orjson path."""
    try:
        import simdjson  # noqa: PLC0415  # only large bodies need it: no cold-start cost
    except ImportError:
        return None
    return simdjson


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
            if too_many(details):
                raise invalid(details)
        else:
            indices.append(index)
    if details:  # the rows of the right length are still checked, for a complete answer
        records = [records[index] for index in indices]
    if not records:
        if details:
            raise invalid(details)
        return []
    columns = list(zip(*records, strict=True))
    values = [
        csv_numbers(spec, column, partial(_report, details, indices, spec.name))
        if spec.numeric
        else read_missing(spec, column)[0]
        for spec, column in zip(features, columns, strict=True)
    ]
    if details:
        details.sort(key=lambda entry: entry["instance"])
        raise invalid(details)
    return list(zip(*values, strict=True))


# A column made of these characters only holds plain numbers and empty fields, where float()
# and the contract's number grammar agree exactly (no "_", "inf", "nan", non-ASCII digits).
_PLAIN_NUMBER_BYTES = b"0123456789.eE+-"


def _report(
    details: list[dict[str, Any]], indices: Sequence[int], feature: str, position: int, problem: str
) -> None:
    if len(details) < MAX_DETAILS:
        details.append(detail(indices[position], feature, problem))


def csv_numbers(
    spec: FeatureSpec, fields: Sequence[str], report: Callable[[int, str], None]
) -> list[float | None]:
    """A numeric CSV column read with the feature's rule; ``report(position, problem)`` is
    called for each cell the rule refuses (read as None). The API and the batch scorer share it."""
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
            report(position, str(problem))
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
