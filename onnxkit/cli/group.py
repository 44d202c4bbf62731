"""The command group: commands load on demand, and errors become one line, in one place.

A command's module is imported only when that command runs or shows its help, so ``onnxkit
--help`` and every command pay only for their own imports (scikit-learn, boto3, onnxruntime
and rich stay unloaded until a command needs them). :func:`cli_errors`, around every command,
is the one place where domain errors (:class:`onnxkit.errors.KitError`), AWS errors and
Ctrl-C / SIGTERM become one ``error: ...`` line on stderr and a non-zero exit.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import typer
from typer import _click as click  # typer vendors click: its group and commands are these
from typer.core import TyperCommand, TyperGroup

from onnxkit import stopping
from onnxkit.cloud.errors import describe_aws_error, one_line
from onnxkit.errors import KitError


class LazyGroup(TyperGroup):
    """A group whose commands (name -> one-line summary) are the modules ``onnxkit.cli.<name>``,
    each defining a function of the same name."""

    summaries: Mapping[str, str] = {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        """The commands in the order the table lists them."""
        return list(self.summaries)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The command, its module imported now."""
        if cmd_name not in self.summaries:
            return None
        if cmd_name not in self.commands:
            self.commands[cmd_name] = load_command(cmd_name)
        return self.commands[cmd_name]

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The commands and their summaries, without importing a command."""
        # click's own layout (Group.format_commands), from the summaries instead of the commands.
        limit = formatter.width - 6 - max(len(name) for name in self.summaries)
        rows = [
            (name, TyperCommand(name, help=summary).get_short_help_str(limit))
            for name, summary in self.summaries.items()
        ]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; its failures end as one line (:func:`cli_errors`)."""
        with cli_errors():
            return super().invoke(ctx)


def load_command(name: str) -> click.Command:
    """The click command of ``onnxkit.cli.<name>``'s function ``<name>``."""
    module = importlib.import_module(f"{__package__}.{name}")
    single = typer.Typer(
        rich_markup_mode=None, pretty_exceptions_enable=False, add_completion=False
    )
    single.command(name)(getattr(module, name))
    return typer.main.get_command(single)


def _aws_message(error: Exception) -> str | None:
    """One line for an AWS SDK error, None for any other (boto is looked at only when loaded:
    an AWS error cannot exist before)."""
    if "botocore" in sys.modules:
        from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415 - loaded

        if isinstance(error, BotoCoreError | ClientError):
            return describe_aws_error(error)
    if "boto3" in sys.modules:
        from boto3.exceptions import Boto3Error  # noqa: PLC0415 - loaded

        if isinstance(error, Boto3Error):  # e.g. S3UploadFailedError wraps the ClientError
            return str(error)
    return None


@contextmanager
def cli_errors() -> Iterator[None]:
    """Turn KitError, AWS errors and Ctrl-C into one stderr line and a non-zero exit.

    typer renders ClickExceptions as a multi-line panel; operators asked for one line that a
    script can grep, so the commands' failures are printed here.
    """
    try:
        yield
    except KitError as error:
        _fail(str(error), error.exit_code)
    except KeyboardInterrupt as error:
        _fail(*stopping.outcome(error))  # 130 for SIGINT, 143 for SIGTERM
    except Exception as error:
        message = _aws_message(error)
        if message is None:
            raise
        _fail(message, 1)


def _fail(message: str, code: int) -> None:
    click.echo(f"error: {one_line(message)}", err=True)
    sys.stderr.flush()
    raise typer.Exit(code)
