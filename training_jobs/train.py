"""SageMaker script-mode training job: CSV -> scikit-learn Pipeline -> ONNX -> int8 -> artifact.

Runs unchanged in SageMaker's prebuilt scikit-learn container and on a laptop. It reads the
train (and optional validation) channel, fits one Pipeline (imputation, scaling, one-hot and
the estimator) so the ONNX graph is the whole model, converts it with skl2onnx, quantizes it
with onnxruntime, checks parity of scikit-learn vs ONNX fp32 vs ONNX int8 on held-out rows,
and writes ``model.onnx`` plus a validated ``manifest.json`` into ``SM_MODEL_DIR``.

Bad input ends the job with exit code 1, one readable line on stderr and the same line in
``$SM_OUTPUT_DIR/failure`` (SageMaker's FailureReason).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")  # read when onnxruntime is imported

# The job's steps live in the modules beside this script (training_jobs.job runs them). The
# source tarball holds them as the training_jobs package next to onnxkit/contract, both beside
# this script, which SageMaker runs with its own folder on sys.path.
from training_jobs.artifact import fail
from training_jobs.errors import TrainingError
from training_jobs.hyperparameters import parse_args
from training_jobs.job import run


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: SageMaker calls ``python train.py --name value ...``."""
    # onnxruntime.quantization logs advice through the root logger; keep the job log clean.
    logging.getLogger().setLevel(logging.ERROR)
    output_dir = os.environ.get("SM_OUTPUT_DIR")
    try:
        hyperparameters = parse_args(argv, description=__doc__)
        output_dir = hyperparameters.output_dir
        run(hyperparameters)
    except TrainingError as error:
        return fail(str(error), output_dir)
    except MemoryError:
        return fail("out of memory: use a larger instance type or fewer rows", output_dir)
    except Exception as error:  # noqa: BLE001 - reported as the job's FailureReason
        # A bug of ours, not the caller's: keep the traceback for the logs.
        import traceback  # noqa: PLC0415

        traceback.print_exc()
        return fail(f"internal error: {type(error).__name__}: {error}", output_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
