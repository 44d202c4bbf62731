"""The function's settings and its model's lifecycle, as one object built once per process.

:class:`Settings` come from a mapping passed in (Lambda passes ``os.environ``; the names and
defaults are :mod:`onnxkit.contract.layout`'s). :class:`Runtime` locates the model, checks its
and its manifest's digests and loads it at construction (Lambda's init, which SnapStart
snapshots); with no model it keeps the 503 that says why, and re-checks a missing pointer or an
S3 failure at most every :data:`POINTER_RECHECK_SECONDS`. A refused model is never retried.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onnxkit.contract.layout import (
    MAX_BODY_BYTES,
    MAX_BODY_BYTES_ENV,
    MAX_EXPLAIN_INSTANCES,
    MAX_EXPLAIN_INSTANCES_ENV,
    MAX_INSTANCES,
    MAX_INSTANCES_ENV,
    MODEL_MANIFEST_SHA256_ENV,
    MODEL_SHA256_ENV,
    MODEL_URI_ENV,
)

from .errors import ApiError
from .predictor import Model, load_model
from .source import FetchFailed, LocatedModel, ModelLocator, ModelSourceError, NoModelYet

# A missing pointer (docs/CONTRACTS.md) or an S3 read failure is retried at most this often.
POINTER_RECHECK_SECONDS = 10.0
# Lambda's writable /tmp, where downloads and extracted archives are cached.
DEFAULT_CACHE = Path("/tmp") / "onnxkit-models"  # noqa: S108


@dataclass(frozen=True)
class Settings:
    """The function's configuration."""

    model_uri: str = ""
    model_sha256: str = ""
    model_manifest_sha256: str = ""  # pins manifest.json as MODEL_SHA256 pins model.onnx
    max_instances: int = MAX_INSTANCES
    max_body_bytes: int = MAX_BODY_BYTES
    max_explain_instances: int = MAX_EXPLAIN_INSTANCES  # rows per /explain call
    cache_dir: Path = DEFAULT_CACHE

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Settings from environment variables (``MODEL_URI``, ``MODEL_SHA256``, ...)."""
        tmp = env.get("TMPDIR")
        return cls(
            model_uri=env.get(MODEL_URI_ENV, ""),
            model_sha256=env.get(MODEL_SHA256_ENV, ""),
            model_manifest_sha256=env.get(MODEL_MANIFEST_SHA256_ENV, ""),
            max_instances=int(env.get(MAX_INSTANCES_ENV) or MAX_INSTANCES),
            max_body_bytes=int(env.get(MAX_BODY_BYTES_ENV) or MAX_BODY_BYTES),
            max_explain_instances=int(env.get(MAX_EXPLAIN_INSTANCES_ENV) or MAX_EXPLAIN_INSTANCES),
            cache_dir=Path(tmp) / "onnxkit-models" if tmp else DEFAULT_CACHE,
        )


NO_MODEL = ApiError(503, "no_model", "no model has been promoted yet")
UNAVAILABLE = ApiError(
    503,
    "model_unavailable",
    "the configured model is not served (it failed to load or did not match its digest); "
    "the function's log says why",
)


class Runtime:
    """The loaded model, or why there is none; a missing pointer is re-checked later.

    ``log`` receives why a model is missing or refused; ``on_load`` is called with each model
    loaded (the metrics take its version as their dimension).
    """

    def __init__(
        self,
        settings: Settings,
        locator: ModelLocator | None = None,
        *,
        log: Any = None,
        on_load: Callable[[Model], None] | None = None,
    ) -> None:
        self.settings = settings
        self.locator = locator or ModelLocator(settings.cache_dir)
        self.model: Model | None = None
        self.located: LocatedModel | None = None  # where the model's files are (companions)
        self.problem: ApiError | None = None
        self.reason = ""  # why there is no model, for logs and the local CLI
        self._log = log or logging.getLogger(__name__)
        self._on_load = on_load
        self._checked_at = 0.0
        self._retry = False  # a missing pointer or an S3 hiccup, never a refused model
        # Callers on several threads (tests, an embedding server) load a late model once.
        self._lock = threading.Lock()
        self._load()

    def _load(self) -> None:
        self._checked_at = time.monotonic()
        try:
            located = self.locator.locate(
                self.settings.model_uri,
                self.settings.model_sha256,
                self.settings.model_manifest_sha256,
            )
            model = load_model(located)
        except NoModelYet as error:
            self._log.warning("no model yet: %s", error)
            self.reason, self.problem, self._retry = str(error), NO_MODEL, True
            return
        except ModelSourceError as error:
            # Refuse loudly: never serve a different model than the deployment names. The
            # details (paths, buckets, digests) go to the log, not to clients.
            self._log.error("refusing to serve: %s", error)
            self.reason, self.problem = str(error), UNAVAILABLE
            self._retry = isinstance(error, FetchFailed)
            return
        self.model, self.problem, self.reason = model, None, ""
        self.located = located
        if self._on_load is not None:
            self._on_load(model)

    def require(self) -> Model:
        """The model, or the 503 that explains why there is none."""
        if self.model is not None:
            return self.model
        if self._retry:
            with self._lock:
                if time.monotonic() - self._checked_at >= POINTER_RECHECK_SECONDS:
                    self._load()
            if self.model is not None:
                return self.model
        raise self.problem or NO_MODEL
