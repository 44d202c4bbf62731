"""The ``onnxkit`` command line: local workflow, local serving, and a deployed kit's operations.

Each command lives in its own module under ``onnxkit.commands`` and registers itself here;
heavy imports (scikit-learn, boto3, onnxruntime) happen inside the commands, not at start-up.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="onnxkit",
    help="scikit-learn -> quantized ONNX -> HTTPS, on AWS or on this machine.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Plain click usage errors: one "Error: ..." line a script can read, no boxed panel.
    rich_markup_mode=None,
    add_completion=False,
)

from onnxkit.commands.predict import predict as _predict_cmd  # noqa: E402

app.command("predict")(_predict_cmd)
from onnxkit.commands.models import models as _models_cmd  # noqa: E402

app.command("models")(_models_cmd)
from onnxkit.commands.train import train as _train_cmd  # noqa: E402

app.command("train")(_train_cmd)
from onnxkit.commands.status import status as _status_cmd  # noqa: E402

app.command("status")(_status_cmd)

from onnxkit.commands.run import run as _run_cmd  # noqa: E402

app.command("run")(_run_cmd)
from onnxkit.commands.rollback import rollback as _rollback_cmd  # noqa: E402

app.command("rollback")(_rollback_cmd)

from onnxkit.commands.serve import serve as _serve_cmd  # noqa: E402

app.command("serve")(_serve_cmd)

from onnxkit.commands.demo import demo as _demo_cmd  # noqa: E402

app.command("demo")(_demo_cmd)


def main() -> None:
    """Console-script entry point."""
    from onnxkit import stopping  # noqa: PLC0415

    stopping.install()
    app()


if __name__ == "__main__":
    main()
