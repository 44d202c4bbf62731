"""Where things live and what they are called: the one owner of the kit's names.

Bucket prefixes and keys, artifact file names and digests, deployed names (stacks and their
outputs, the alias, functions, the state machine, the model package group), the inference
function's environment variable names, the model-name rule and the API's limits. Every writer
and reader takes them from here (docs/CONTRACTS.md); nothing here imports anything but the
standard library, so the serving cold path pays nothing for it.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Literal
from urllib.parse import parse_qs, urlsplit

# --- The artifact: files a training job writes into SM_MODEL_DIR -------------------------
SERVING_FILE: Final = "model.onnx"  # the graph the inference function loads
FP32_FILE: Final = "model.fp32.onnx"  # only when the serving graph is int8
MANIFEST_FILE: Final = "manifest.json"
# What the training data and the held-out predictions looked like (onnxkit/contract/reference.py);
# listed with its digest in the manifest's files. Absent in artifacts from before it.
REFERENCE_FILE: Final = "reference.json"
# A seeded sample of training rows, as the graph reads them, that POST /explain measures
# contributions against (onnxkit/contract/background.py); listed with its digest in the
# manifest's files. Absent in artifacts from before it: /explain then answers 409.
BACKGROUND_FILE: Final = "background.json"
# The files promotion copies beside model.onnx and manifest.json (each only when listed).
COMPANION_FILES: Final = (REFERENCE_FILE, BACKGROUND_FILE)
ARCHIVE_FILE: Final = "model.tar.gz"  # SageMaker's tarball of SM_MODEL_DIR
FAILURE_FILE: Final = "failure"  # in SM_OUTPUT_DIR: a failed job's one line (its FailureReason)

# --- The artifact bucket ------------------------------------------------------------------
DATA_PREFIX: Final = "data/"  # training input (the DataUri output)
SCHEDULED_TRAIN_PREFIX: Final = f"{DATA_PREFIX}train/"  # what a scheduled retraining reads
TRAINING_PREFIX: Final = "training/"  # training/<job>/output/model.tar.gz
CHECKPOINT_PREFIX: Final = "checkpoints/"  # checkpoints/<job>/ (spot training)
SCORING_PREFIX: Final = "scoring/"  # batch scoring: input/ uploads, output/<run>/ results
MODELS_PREFIX: Final = "models/"  # promoted models, pointers and promotion records
POINTER_FILE: Final = "production.json"
INTENT_FILE: Final = "promotion.json"  # the write-ahead record of a promotion or rollback
# Beside a promoted version's manifest: the quality gate's decision, with the production model it
# was compared with (onnxkit/contract/card.py). Absent for versions promoted before it.
EVALUATION_FILE: Final = "evaluation.json"
# SageMaker's CustomerMetadataProperties of a model package: at most 50 entries, keys of 1-128
# and values of 1-256 characters from letters, digits, separators and ``_.:/=+-@``.
PACKAGE_METADATA_MAX_ENTRIES: Final = 50
PACKAGE_METADATA_MAX_KEY: Final = 128
PACKAGE_METADATA_MAX_VALUE: Final = 256
# The entry the Register state adds itself (the Step Functions execution's name).
PACKAGE_EXECUTION_KEY: Final = "execution"


def model_prefix(model_name: str) -> str:
    """Key prefix of a model's immutable versions, its pointer and its promotion record."""
    return f"{MODELS_PREFIX}{model_name}/"


def version_prefix(model_name: str, model_version: str) -> str:
    """Key prefix of one promoted version (``model.onnx``, ``manifest.json``)."""
    return f"{model_prefix(model_name)}{model_version}/"


def pointer_key(model_name: str) -> str:
    """Key of a model's production pointer."""
    return f"{model_prefix(model_name)}{POINTER_FILE}"


def intent_key(model_name: str) -> str:
    """Key of a model's write-ahead promotion record."""
    return f"{model_prefix(model_name)}{INTENT_FILE}"


def is_pointer_uri(uri: str) -> bool:
    """Whether a ``MODEL_URI`` names a production pointer rather than a model."""
    return uri.split("?", 1)[0].endswith(".json")


def s3_object(uri: str) -> tuple[str, str, str | None] | None:
    """(bucket, key, version id) of ``s3://bucket/key[?versionId=...]`` (the pointer's and the
    manifest's uris); None for anything else. A key may hold ``;`` and ``#`` (S3 allows them):
    only ``?`` starts the query."""
    parts = urlsplit(uri, allow_fragments=False)
    if parts.scheme != "s3" or not parts.netloc or not parts.path.strip("/"):
        return None
    return parts.netloc, parts.path.lstrip("/"), parse_qs(parts.query).get("versionId", [None])[0]


# --- Deployed names (the CDK app writes them, the CLI and the pipeline steps read them) ---
StackPart = Literal["Artifacts", "Pipeline", "Serving", "Scoring"]
STACK_PARTS: Final[tuple[StackPart, ...]] = ("Artifacts", "Pipeline", "Serving", "Scoring")

# CfnOutput ids per stack.
BUCKET_OUTPUT: Final = "ArtifactBucketName"
DATA_URI_OUTPUT: Final = "DataUri"
MODEL_PACKAGE_GROUP_OUTPUT: Final = "ModelPackageGroupName"
KMS_KEY_OUTPUT: Final = "KmsKeyArn"
STATE_MACHINE_OUTPUT: Final = "StateMachineArn"
TOPIC_OUTPUT: Final = "NotificationTopicArn"
API_URL_OUTPUT: Final = "ApiUrl"  # ends with "/"
FUNCTION_NAME_OUTPUT: Final = "FunctionName"
LIVE_ALIAS_OUTPUT: Final = "LiveAliasArn"
AUTH_MODE_OUTPUT: Final = "AuthMode"  # "iam" or "api_key"
SCORING_STATE_MACHINE_OUTPUT: Final = "ScoringStateMachineArn"
SCORING_FUNCTION_OUTPUT: Final = "ScoringFunctionName"
API_KIND_OUTPUT: Final = "ApiKind"  # an ApiKind; absent in stacks from before it: "rest"
# s3://<bucket>/drift/ (Serving): where the drift function writes; absent in stacks from before it.
DRIFT_REPORTS_OUTPUT: Final = "DriftReportsUri"
STACK_OUTPUTS: Final[dict[StackPart, tuple[str, ...]]] = {
    "Artifacts": (BUCKET_OUTPUT, DATA_URI_OUTPUT, MODEL_PACKAGE_GROUP_OUTPUT, KMS_KEY_OUTPUT),
    "Pipeline": (STATE_MACHINE_OUTPUT, TOPIC_OUTPUT),
    "Serving": (
        API_URL_OUTPUT,
        FUNCTION_NAME_OUTPUT,
        LIVE_ALIAS_OUTPUT,
        AUTH_MODE_OUTPUT,
        API_KIND_OUTPUT,
        DRIFT_REPORTS_OUTPUT,
    ),
    "Scoring": (SCORING_STATE_MACHINE_OUTPUT, SCORING_FUNCTION_OUTPUT),
}
# The Serving stack's front door: API Gateway REST API, HTTP API, or a Lambda function URL.
ApiKind = Literal["rest", "http", "function_url"]

ALIAS_NAME: Final = "live"  # the inference function's alias: what it serves is the live model


def stack_name(env: str, part: StackPart) -> str:
    """``OnnxKit-<env>-<part>``."""
    return f"OnnxKit-{env}-{part}"


def inference_function_name(env: str) -> str:
    """The inference function's name."""
    return f"onnxkit-{env}-inference"


def state_machine_name(env: str) -> str:
    """The training state machine's name."""
    return f"onnxkit-{env}-training"


def scoring_state_machine_name(env: str) -> str:
    """The batch scoring state machine's name."""
    return f"onnxkit-{env}-scoring"


def scoring_function_name(env: str) -> str:
    """The batch scoring function's name (the inference code, its own concurrency)."""
    return f"onnxkit-{env}-scoring"


def drift_function_name(env: str) -> str:
    """The scheduled drift check's function name."""
    return f"onnxkit-{env}-drift"


def bucket_name(env: str, account: str, region: str) -> str:
    """The artifact bucket's name (globally unique through account and region)."""
    return f"onnxkit-{env}-artifacts-{account}-{region}"


def model_package_group_name(env: str, model_name: str) -> str:
    """The SageMaker model package group of one model in one environment."""
    return f"onnxkit-{env}-{model_name}"


# --- Environment variables ----------------------------------------------------------------
# The inference function's: which model a published version serves and how much it takes.
MODEL_URI_ENV: Final = "MODEL_URI"  # s3 uri or path of model.onnx, or of the pointer
MODEL_SHA256_ENV: Final = "MODEL_SHA256"  # pins model.onnx; empty when following the pointer
MODEL_MANIFEST_SHA256_ENV: Final = "MODEL_MANIFEST_SHA256"  # pins manifest.json
MODEL_NAME_ENV: Final = "MODEL_NAME"
MAX_INSTANCES_ENV: Final = "MAX_INSTANCES"
MAX_BODY_BYTES_ENV: Final = "MAX_BODY_BYTES"
MAX_EXPLAIN_INSTANCES_ENV: Final = "MAX_EXPLAIN_INSTANCES"
# The pipeline steps'.
ARTIFACT_BUCKET_ENV: Final = "ARTIFACT_BUCKET"
FUNCTION_NAME_ENV: Final = "FUNCTION_NAME"
ALIAS_NAME_ENV: Final = "ALIAS_NAME"
# The scoring function's: bytes of input per part unless a run asks for another size.
PART_BYTES_ENV: Final = "PART_BYTES"

# --- Limits -------------------------------------------------------------------------------
MAX_INSTANCES: Final = 1000  # rows per /predict call by default (413 above)
MAX_BODY_BYTES: Final = 5 * 1024 * 1024  # a /predict body (413 above); API Gateway's is 10 MB
# Rows per /explain call by default (413 above): each row costs thousands of model rows.
MAX_EXPLAIN_INSTANCES: Final = 10

# --- Request capture (onnxkit/contract/capture.py) -------------------------------------
# JSON Lines files of capture records: ``capture-<UTC start>-<pid>-<sequence>.jsonl``.
CAPTURE_PREFIX: Final = "capture-"
CAPTURE_SUFFIX: Final = ".jsonl"


def capture_file_name(started_at: datetime, pid: int, sequence: int) -> str:
    """The name of one capture file: sorts by start time, unique per writer and file."""
    stamp = started_at.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{CAPTURE_PREFIX}{stamp}-{pid}-{sequence:06d}{CAPTURE_SUFFIX}"


# --- Cloud capture and drift (the artifact bucket) -----------------------------------------
# The inference function's captured records land under ``capture/YYYY/MM/DD/HH/`` (the UTC hour
# they were delivered in), each object JSON Lines of capture records, gzip-compressed or plain
# (readers tell them apart by gzip's magic bytes). The scheduled drift check reads a window of
# those hours and writes its reports under ``drift/``.
CLOUD_CAPTURE_PREFIX: Final = "capture/"
# Records Firehose could not process or deliver, kept apart so that readers of capture/ only
# ever see capture records: capture-errors/<error type>/YYYY/MM/DD/HH/.
CAPTURE_ERRORS_PREFIX: Final = "capture-errors/"
# The inference function captures this share (0..1) of its answered /predict calls, each as one
# stdout line per row (functions/inference/capture.py); unset or 0: nothing is captured.
CAPTURE_SAMPLE_RATE_ENV: Final = "CAPTURE_SAMPLE_RATE"
# The CloudWatch Logs filter pattern that picks the capture lines out of the function's log: a
# JSON line with a string "captured_at" at the top, which only a capture record has (Powertools'
# log lines and the EMF line have other keys).
CAPTURE_LOG_FILTER_PATTERN: Final = '{ $.captured_at = "*" }'
DRIFT_PREFIX: Final = "drift/"  # drift/reports/<UTC stamp>.json and drift/latest.json
DRIFT_REPORTS_PREFIX: Final = f"{DRIFT_PREFIX}reports/"
DRIFT_LATEST_KEY: Final = f"{DRIFT_PREFIX}latest.json"
# The drift function's environment (besides ARTIFACT_BUCKET_ENV and MODEL_NAME_ENV).
DRIFT_SETTINGS_ENV: Final = "DRIFT_SETTINGS"  # JSON: window, row bounds, thresholds, namespace
TRAINING_STATE_MACHINE_ENV: Final = "TRAINING_STATE_MACHINE_ARN"  # set only to retrain on drift
# Its CloudWatch metrics: one namespace per environment (the only one its role may write), the
# model as a dimension (not its version: a promotion keeps the series and the alarm).
DRIFT_SCORE_METRIC: Final = "DriftScore"  # per feature: measure / limit, the largest; > 1 drifted
DRIFTED_METRIC: Final = "DriftedFeatures"  # overall: features (and predictions) that drifted
CAPTURE_ROWS_METRIC: Final = "CaptureRows"  # overall: the live version's rows in the window
MODEL_DIMENSION: Final = "Model"
FEATURE_DIMENSION: Final = "Feature"


def drift_metric_namespace(env: str) -> str:
    """The CloudWatch namespace of one environment's drift metrics."""
    return f"OnnxKit/{env}/Drift"


def capture_hour_prefix(hour: datetime) -> str:
    """Key prefix of the capture objects delivered in one UTC hour."""
    return f"{CLOUD_CAPTURE_PREFIX}{hour.astimezone(UTC):%Y/%m/%d/%H}/"


def drift_report_key(checked_at: datetime) -> str:
    """Key of one drift report: sorts by the time of the check."""
    return f"{DRIFT_REPORTS_PREFIX}{checked_at.astimezone(UTC):%Y%m%dT%H%M%SZ}.json"


# --- The model-name rule ------------------------------------------------------------------
# A model name becomes an S3 key segment, the training job name prefix (``<name>-<uuid>``
# within SageMaker's 63 characters) and part of the model package group's name: so short,
# lower-case and DNS-like. Versions are generated (a timestamp and a short id) and may be longer.
MODEL_NAME_PATTERN: Final = r"[a-z0-9](?:[a-z0-9-]{0,22}[a-z0-9])?"
MODEL_VERSION_PATTERN: Final = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}"
_MODEL_NAME: Final = re.compile(MODEL_NAME_PATTERN)


def model_name_problem(name: str) -> str | None:
    """Why ``name`` is not a valid model name, or None when it is."""
    if _MODEL_NAME.fullmatch(name) is None:
        return (
            f"{name!r} is not a model name: 1-24 lower-case letters, digits or '-', "
            "starting and ending with a letter or digit"
        )
    return None


def check_model_name(name: str) -> str:
    """``name`` when it is a valid model name; ValueError naming the rule otherwise."""
    problem = model_name_problem(name)
    if problem:
        raise ValueError(problem)
    return name


# --- Digests ------------------------------------------------------------------------------
def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of bytes."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()
