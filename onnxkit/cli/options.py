"""Option values the commands share: ``key=value`` pairs and the local config they override."""

from __future__ import annotations

from onnxkit.config import ConfigError, OnnxKitConfig, load_config
from onnxkit.errors import KitError


def pairs(values: list[str] | None, what: str) -> dict[str, str]:
    """``key=value`` items as a dict; KitError naming the option (``what``) otherwise."""
    found: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise KitError(f"{what} {item!r} is not key=value")
        found[key.strip()] = value.strip()
    return found


def local_config(setting: list[str] | None) -> OnnxKitConfig:
    """The ``local`` environment's config with the ``--set`` overrides; one line when bad."""
    try:
        return load_config("local", pairs(setting, "--set"))
    except ConfigError as error:
        raise KitError(str(error)) from None
