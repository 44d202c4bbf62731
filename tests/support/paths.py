"""Where the tests find the checkout and their fixture files."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EVENTS = REPO / "tests" / "events"
