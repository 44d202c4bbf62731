"""Lambda entry point: ``functions.inference.scoring_handler.lambda_handler`` (the scoring
state machine's Plan, Score and Summarize events; :mod:`.scoring_app`).

Built once, here at import (Lambda's init), from the function's environment.
"""

from __future__ import annotations

import os

from .scoring_app import ScoringFunction

FUNCTION = ScoringFunction.from_env(os.environ)
lambda_handler = FUNCTION.lambda_handler
