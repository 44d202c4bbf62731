"""The command group: lazy loading, the summaries ``onnxkit --help`` lists, one error boundary."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

from onnxkit.cli import COMMANDS
from onnxkit.cli.group import load_command
from tests.support.cli import invoke


@pytest.mark.parametrize("name", list(COMMANDS))
def test_each_summary_is_the_first_paragraph_of_its_commands_docstring(name):
    command = load_command(name)
    assert command.help is not None
    first = inspect.cleandoc(command.help).split("\n\n")[0]
    assert COMMANDS[name] == " ".join(first.split())


def test_help_lists_every_command_and_imports_none():
    script = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from onnxkit.cli import app\n"
        "result = CliRunner().invoke(app, ['--help'])\n"
        "assert result.exit_code == 0, result.output\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('onnxkit.cli.'))\n"
        "assert loaded == ['onnxkit.cli.group'], loaded\n"
        "heavy = {'rich', 'boto3', 'botocore', 'onnxruntime', 'sklearn', 'pydantic'}\n"
        "assert not heavy & set(sys.modules), heavy & set(sys.modules)\n"
        "print(result.output)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    listed = [line.split()[0] for line in done.stdout.split("Commands:")[1].splitlines() if line]
    assert listed == list(COMMANDS)


def test_an_unknown_command_is_a_usage_error(runner):
    result = invoke(runner, "nope")
    assert result.exit_code == 2
    assert "No such command 'nope'" in result.output
