"""The learning curve, printed while the estimator fits, so SageMaker graphs it live.

scikit-learn 1.9's callback API (``set_callbacks``) reaches LogisticRegression and Pipeline but
neither MLP nor HistGradientBoosting, so the curve comes from their ``verbose`` output:
during ``fit`` the estimator prints into a stream that turns each iteration's line into
``[curve]`` lines (``onnxkit.contract.metrics.curve_line``) on the job's stdout as it is
written. ``verbose`` only prints: the fitted model is the same (tests/unit/training/test_curve.py
compares predictions, coefficients and the pickled estimator with and without it), and the
estimator's ``verbose`` is put back afterwards.
"""

from __future__ import annotations

import io
import math
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stdout
from typing import Any, TextIO

from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.neural_network import MLPClassifier, MLPRegressor

from onnxkit.contract.metrics import curve_line

_NUMBER = r"(-?(?:[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?|nan|inf))"
# scikit-learn 1.9's verbose lines (neural_network/_multilayer_perceptron.py,
# ensemble/_hist_gradient_boosting/gradient_boosting.py ``_print_iteration_stats``).
_MLP_ITERATION = re.compile(rf"^Iteration ([0-9]+), loss = {_NUMBER}$")
_MLP_VALIDATION = re.compile(rf"^Validation score: {_NUMBER}$")
_HIST_ITERATION = re.compile(r"^\[([0-9]+)/[0-9]+\] ")
_HIST_TRAIN = re.compile(rf"\btrain loss: {_NUMBER}")
_HIST_VALIDATION = re.compile(rf"\bval loss: {_NUMBER}")
_HIST_SCORES = (("train_loss", _HIST_TRAIN), ("validation_loss", _HIST_VALIDATION))

# verbose level that prints one line per iteration, per estimator family
_VERBOSE = {
    MLPClassifier: 1,
    MLPRegressor: 1,
    HistGradientBoostingClassifier: 2,
    HistGradientBoostingRegressor: 2,
}

Emit = Callable[[int, str, float], None]


class CurveParser:
    """Reads scikit-learn's verbose lines; hands each curve value to ``emit``.

    ``feed`` returns False for a line that is not an iteration's, which the caller passes on.
    """

    def __init__(self, emit: Emit) -> None:
        self.emit = emit
        self.iteration = 0

    def _value(self, name: str, text: str) -> None:
        value = float(text)
        if math.isfinite(value):  # a diverged fit's nan is no point on a graph
            self.emit(self.iteration, name, value)

    def feed(self, line: str) -> bool:
        """Handle one line (without its newline); True when it was an iteration's."""
        if match := _MLP_ITERATION.match(line):
            self.iteration = int(match.group(1))
            self._value("train_loss", match.group(2))
            return True
        if match := _MLP_VALIDATION.match(line):
            self._value("validation_score", match.group(1))
            return True
        if match := _HIST_ITERATION.match(line):
            self.iteration = int(match.group(1))
            # Scores only when early stopping is on (scikit-learn's default above 10,000 rows);
            # otherwise the line has none and nothing is printed for it.
            for name, pattern in _HIST_SCORES:
                if found := pattern.search(line):
                    self._value(name, found.group(1))
            return True
        return False


class CurveStream(io.TextIOBase):
    """A text stream that parses complete lines as they are written.

    Iteration lines become ``[curve]`` lines on ``out``, flushed at once (SageMaker reads the
    job's stdout through a pipe); any other line passes through unchanged.
    """

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.pending = ""
        self.parser = CurveParser(self._print)

    def _print(self, iteration: int, name: str, value: float) -> None:
        self.out.write(curve_line(iteration, name, value) + "\n")
        self.out.flush()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        lines = (self.pending + text).split("\n")
        self.pending = lines.pop()
        for line in lines:
            if not self.parser.feed(line):
                self.out.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        self.out.flush()

    def close_line(self) -> None:
        """Pass on a last line that never got its newline."""
        if self.pending:
            self.write("\n")


def verbose_level(estimator: Any) -> int | None:
    """The ``verbose`` that makes this estimator print each iteration, or None (no curve)."""
    return _VERBOSE.get(type(estimator))


@contextmanager
def printed_curve(estimator: Any, out: TextIO | None = None) -> Iterator[None]:
    """While the body fits ``estimator``, print its learning curve on ``out`` (stdout)."""
    level = verbose_level(estimator)
    if level is None:
        yield
        return
    stream = CurveStream(out or sys.stdout)
    before = estimator.get_params(deep=False)["verbose"]
    estimator.set_params(verbose=level)
    try:
        with redirect_stdout(stream):
            yield
    finally:
        stream.close_line()
        estimator.set_params(verbose=before)
