"""Talking to a deployed kit: stack discovery, AWS sessions and one-line errors."""
