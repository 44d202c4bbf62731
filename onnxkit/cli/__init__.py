"""The ``onnxkit`` command line: local workflow, local serving, and a deployed kit's operations.

Each command is the function of the same name in its own module, ``onnxkit.cli.<command>``,
listed in :data:`COMMANDS` with the first paragraph of its docstring (what ``onnxkit --help``
shows); the group (:mod:`onnxkit.cli.group`) imports a command's module only when it runs or
shows its help. Presentation (consoles, progress bars, tables) lives in
:mod:`onnxkit.cli.present`. Nothing outside this package imports it.
"""

from __future__ import annotations

import os

import typer

from onnxkit import stopping
from onnxkit.cli.group import LazyGroup

# command -> its summary in ``onnxkit --help`` (tests/functional/cli/test_group.py checks each
# against the command's docstring).
COMMANDS: dict[str, str] = {
    "predict": "Score rows over HTTPS: batched, retried with backoff, written batch by batch, "
    "resumable.",
    "score": "Score a CSV/JSONL/Parquet file here, or a CSV/JSONL file in the cloud with --env.",
    "models": "List registered model versions with their metrics; the live one is marked.",
    "train": "Upload training data to the kit's data location and start a pipeline execution.",
    "status": "Show a training run: steps, training job status and metrics, gate, promoted "
    "version.",
    "run": "Train, evaluate, gate, register and promote a model on this machine.",
    "rollback": "Serve the previous production model again (or the one --to names).",
    "serve": "Serve a model with the same handler as the Lambda function: POST /predict, POST "
    "/explain, GET /model, GET /health, GET /openapi.json.",
    "demo": "Train, gate, promote, serve and call a model locally, end to end.",
    "drift": "Compare captured requests with the model's training data; exit 3 when something "
    "drifted.",
    "card": "Render a model card: data, metrics against the baseline, quantization, importance, "
    "drift.",
}


class _Commands(LazyGroup):
    summaries = COMMANDS


app = typer.Typer(
    name="onnxkit",
    cls=_Commands,
    help="scikit-learn -> quantized ONNX -> HTTPS, on AWS or on this machine.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Plain click usage errors: one "Error: ..." line a script can read, no boxed panel.
    rich_markup_mode=None,
    add_completion=False,
)


@app.callback()
def _root() -> None:
    """The group itself takes no options; the commands are loaded on demand."""
    # The process's entry is the one place the shell sets its environment: onnxruntime reads
    # this when its C library initializes, before any command imports it (the Lambda's is set
    # by its construct, the training job's by train.py).
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")


def main() -> None:
    """``python -m onnxkit.cli``: ``app`` with SIGINT and SIGTERM raised as exceptions where the
    command is, so it stops cleanly (exit 130, 143)."""
    stopping.install()
    app()
