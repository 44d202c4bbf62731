"""Batch scoring in the cloud: what the CLI, the scoring state machine and its function exchange.

The scoring state machine (``onnxkit-<env>-scoring``) runs ``Plan -> Score (Distributed Map) ->
Summarize``. Its unit of work is a **part**: a byte range of one input object. Rows are not map
items because Step Functions charges a state transition per child execution and a child's input
is capped at 256 KB: a few hundred rows a child would cost about $2.50 per 100M rows in
transitions alone, where 16 MiB parts cost a few cents (README, "Batch scoring").

- Execution input :class:`ScoringRequest`: an input object or prefix and an output prefix, both
  in the artifact bucket under :data:`SCORING_INPUT_PREFIX` / :data:`SCORING_OUTPUT_PREFIX`.
- ``Plan`` pins the live model (the production pointer at that moment, digests included), checks
  the input's header against the model's features, writes ``<output>plan.json`` (a JSON array of
  :class:`Part`, the map's ``ItemReader``) and returns a :class:`Plan`.
- Every child gets ``{"Items": [Part, ...], "BatchInput": BatchInput}``, scores each part with
  the inference runtime's code, writes ``<output>parts/<part>.jsonl`` (one :data:`record
  <RECORD_FIELDS>` per row, in input order) and then ``<output>parts/<part>.json``
  (:class:`PartResult`): a result file means its records are complete, so a retried or redriven
  child rewrites the same two keys and nothing is counted twice.
- ``Summarize`` reads the plan and the part results and writes ``<output>summary.json``
  (:class:`Summary`): rows in, scored, rejected (with line and reason), parts that failed, the
  model, the duration, and each part's first row so the parts can be merged back in input order.

Records carry ``part``, ``part_row`` and ``part_line`` (0-based row and 1-based line counted from
the part's first byte): a part cannot know how many rows the parts before it hold. The summary's
``first_row``/``first_line`` per part turn them into the input's row and line; ``onnxkit score
--env`` does that when it merges the parts into a local file identical in form to a local run's.
"""

from __future__ import annotations

from typing import Any, Final, Literal

import msgspec

from onnxkit.contract.layout import SCORING_PREFIX

SCORING_INPUT_PREFIX: Final = f"{SCORING_PREFIX}input/"  # the CLI uploads local inputs here
SCORING_OUTPUT_PREFIX: Final = f"{SCORING_PREFIX}output/"  # one folder per run
PLAN_FILE: Final = "plan.json"
SUMMARY_FILE: Final = "summary.json"
PARTS_FOLDER: Final = "parts/"
MAP_RESULTS_FOLDER: Final = "map/"  # the Distributed Map's ResultWriter
MAX_REJECTED_IN_SUMMARY: Final = 1000  # the parts list every rejected row; the summary the first
DEFAULT_PART_BYTES: Final = 16 * 1024 * 1024
Format = Literal["csv", "jsonl"]
# What one output record holds, in this order (``probabilities`` for classifiers only, the
# ``--id-column`` under its own name after ``part_line``).
RECORD_FIELDS: Final = (
    "part", "part_row", "part_line", "prediction", "probabilities", "model_version", "error",
)  # fmt: skip


class ScoringError(ValueError):
    """A request, plan or result that breaks this contract; ``str()`` is one line."""


class _Struct(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=False):
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return msgspec.to_builtins(self)


class ScoringRequest(_Struct, kw_only=True, frozen=True):
    """The scoring state machine's execution input."""

    input_uri: str  # s3://bucket/scoring/input/... : one object, or a prefix ending in "/"
    output_uri: str  # s3://bucket/scoring/output/<run>/
    id_column: str | None = None
    part_bytes: int | None = None  # None: the function's configured part size


class PinnedModel(_Struct, kw_only=True, frozen=True):
    """The one model version a whole run scores with (the pointer when the run started)."""

    name: str
    version: str
    uri: str
    sha256: str
    manifest_sha256: str | None = None


class Part(_Struct, kw_only=True, frozen=True):
    """Records whose first byte lies in ``[start, end)`` of ``s3://bucket/key``."""

    part: int
    key: str
    start: int
    end: int
    size: int  # the object's size: the last part reads to it
    header: list[str] | None = None  # a CSV object's header (its parts hold no header row)
    data_start: int = 0  # where the object's first record starts (after the header)
    first_line: int | None = None  # the line of the part's first byte, when known (first part)


class Plan(_Struct, kw_only=True, frozen=True):
    """``Plan``'s result: the state machine passes it on to the map and to ``Summarize``."""

    bucket: str
    output_prefix: str  # key prefix, ending in "/"
    plan_key: str
    format: Format
    model: PinnedModel
    id_column: str | None
    objects: int
    parts: int
    bytes: int
    started_at: str


class BatchInput(_Struct, kw_only=True, frozen=True):
    """What every child of the map gets beside its ``Items``."""

    bucket: str
    output_prefix: str
    format: Format
    model: PinnedModel
    id_column: str | None = None


class Rejection(_Struct, kw_only=True, frozen=True):
    """A row that was not scored: where it is and why."""

    part_row: int
    part_line: int
    reason: str


class PartResult(_Struct, kw_only=True, frozen=True):
    """What one part held and how its rows went (``parts/<part>.json``)."""

    part: int
    key: str
    rows: int
    scored: int
    rejected: int
    lines: int  # line breaks from the part's first byte to its last record's end
    rejections: list[Rejection]  # the first MAX_REJECTED_IN_SUMMARY
    model_version: str
    seconds: float


class PartSummary(_Struct, kw_only=True, frozen=True):
    """One part in the summary, with where its rows sit in the input."""

    part: int
    key: str
    start: int
    end: int
    first_row: int
    first_line: int | None
    rows: int
    scored: int
    rejected: int


class RejectedRow(_Struct, kw_only=True, frozen=True):
    """A rejected row in the summary: the input's row and line, and why."""

    row: int
    line: int | None
    key: str
    reason: str


class Summary(_Struct, kw_only=True, frozen=True):
    """``summary.json``: a run's account of every row."""

    input_uri: str
    output_uri: str
    format: Format
    model: PinnedModel
    rows: int
    scored: int
    rejected: int
    rejected_rows: list[RejectedRow]  # the first MAX_REJECTED_IN_SUMMARY
    failed_parts: list[Part]  # no result: their rows are not in the output (redrive scores them)
    parts: list[PartSummary]
    started_at: str
    finished_at: str
    seconds: float

    @property
    def complete(self) -> bool:
        """Every part has its result: every row is scored or rejected."""
        return not self.failed_parts


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """(bucket, key) of ``s3://bucket/key``; ScoringError otherwise."""
    if not uri.startswith("s3://") or "/" not in uri[5:] or uri[5:].startswith("/"):
        raise ScoringError(f"{uri!r} is not an s3://bucket/key uri")
    bucket, key = uri[5:].split("/", 1)
    return bucket, key


def part_keys(output_prefix: str, part: int) -> tuple[str, str]:
    """The records and the result object of one part."""
    stem = f"{output_prefix}{PARTS_FOLDER}{part:06d}"
    return f"{stem}.jsonl", f"{stem}.json"


def input_format(name: str) -> Format | None:
    """``csv`` or ``jsonl`` from a file or key name; None when it is neither."""
    lowered = name.lower()
    if lowered.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if lowered.endswith((".csv", ".txt")):
        return "csv"
    return None


_T = Any


def decode(data: bytes | str | Any, kind: type[_T]) -> _T:
    """A contract struct from JSON text or parsed data; ScoringError in one line otherwise."""
    try:
        if isinstance(data, bytes | str):
            return msgspec.json.decode(data, type=kind)
        return msgspec.convert(data, kind)
    except (msgspec.ValidationError, msgspec.DecodeError) as error:
        raise ScoringError(f"not a valid {kind.__name__}: {error}") from None


def encode(value: Any) -> bytes:
    """JSON bytes of a contract struct (or a list of them)."""
    return msgspec.json.encode(value)
