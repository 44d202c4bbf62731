"""Talking to a deployed kit: stack discovery, AWS sessions, the API client, scoring, executions
and the registry; its errors are plain exceptions (:mod:`.errors`)."""
