"""Option values the commands share: ``key=value`` pairs and the local config they override."""

from __future__ import annotations

from onnxkit.config import ConfigError, OnnxKitConfig, load_config
from onnxkit.contract.layout import model_name_problem
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


def pick_model(names: list[str], given: str | None, where: str) -> str:
    """The model a command acts on: ``--name`` when given, else the only one in ``where``;
    KitError with one line otherwise."""
    if given:
        problem = model_name_problem(given)
        if problem:
            raise KitError(f"invalid --name: {problem}")
        return given
    if len(names) == 1:
        return names[0]
    if not names:
        raise KitError(f"no model has been promoted in {where}")
    raise KitError(f"{where} has several models ({', '.join(names)}); pass --name")
