"""Running ``onnxkit`` in-process, as the CLI tests do."""

from __future__ import annotations

from typing import Any

from typer.testing import CliRunner


def invoke(runner: CliRunner, *args: Any) -> Any:
    """Run ``onnxkit`` in-process."""
    from onnxkit.cli import app

    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
