"""Where the model comes from: ``MODEL_URI`` resolved to a local ``model.onnx`` + manifest.

Accepted forms: ``s3://bucket/key[?versionId=...]`` or a local path, naming a ``.onnx`` file
(its ``manifest.json`` sits beside it), a directory holding both, a ``model.tar.gz`` as the
training job writes it, or a production pointer ``.json`` (docs/CONTRACTS.md, parsed by
:func:`onnxkit.contract.pointer.parse_pointer`; a relative ``model_uri`` in a local pointer is
relative to the work directory holding ``models/``). A manifest digest, given with the model's
(``MODEL_MANIFEST_SHA256``) or in the pointer, pins the manifest: any other is refused.
Downloads and extractions are cached under a directory keyed by digest, so a warm or restored
environment never fetches the same model twice. File names and digests are the contract's
(:mod:`onnxkit.contract.layout`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from onnxkit.contract.layout import MANIFEST_FILE, SERVING_FILE, s3_object, sha256_file

# tarfile, tempfile and shutil are imported only when a download or an archive needs them: a
# local model.onnx should not pay for them at cold start.


class ModelSourceError(Exception):
    """The model cannot be fetched or is not what it should be."""


class NoModelYet(ModelSourceError):
    """The production pointer does not exist yet: nothing has been promoted."""


class ManifestMismatch(ModelSourceError):
    """The manifest is not the one the deployment pinned: refuse to serve the model."""


class FetchFailed(ModelSourceError):
    """S3 could not be read (denied, throttled, unreachable): worth trying again later."""


@dataclass(frozen=True)
class LocatedModel:
    """Local files of a model and the digest it must have (if anyone told us)."""

    model_path: Path
    manifest_path: Path
    expected_sha256: str | None
    uri: str


@dataclass(frozen=True)
class S3Location:
    """An ``s3://bucket/key[?versionId=...]`` uri."""

    bucket: str
    key: str
    version_id: str | None = None

    @classmethod
    def parse(cls, uri: str) -> S3Location:
        """Split an s3 uri; the version id is optional."""
        parts = s3_object(uri)
        if parts is None:
            raise ModelSourceError(f"not an s3://bucket/key uri: {uri}")
        return cls(*parts)

    def sibling(self, name: str) -> S3Location:
        """The object called ``name`` under the same prefix (latest version)."""
        prefix = self.key.rsplit("/", 1)[0] + "/" if "/" in self.key else ""
        return S3Location(self.bucket, prefix + name)


class S3Fetcher:
    """Reads objects with boto3, imported only when a model actually lives in S3."""

    def __init__(self, client: Any = None) -> None:
        self._client = client

    @property
    def client(self) -> Any:
        """A lazily built S3 client (boto3 costs ~100 ms to import)."""
        if self._client is None:
            import boto3  # noqa: PLC0415  # deferred: only S3-hosted models pay for it

            self._client = boto3.client("s3")
        return self._client

    def _args(self, location: S3Location) -> dict[str, str]:
        args = {"Bucket": location.bucket, "Key": location.key}
        if location.version_id:
            args["VersionId"] = location.version_id
        return args

    def read(self, location: S3Location) -> bytes | None:
        """The object's bytes, or None when it does not exist."""
        from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

        where = f"s3://{location.bucket}/{location.key}"
        try:
            response = self.client.get_object(**self._args(location))
            return bytes(response["Body"].read())
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code in {"NoSuchKey", "404", "NotFound"}:
                return None
            raise FetchFailed(f"cannot read {where}: {code}") from None
        except BotoCoreError as error:  # no credentials, endpoint unreachable, ...
            raise FetchFailed(f"cannot read {where}: {error}") from None

    def download(self, location: S3Location, target: Path) -> None:
        """Write the object to ``target``, failing clearly when it is missing."""
        data = self.read(location)
        if data is None:
            raise ModelSourceError(f"s3://{location.bucket}/{location.key} does not exist")
        target.write_bytes(data)


def _safe_extract(archive: Path, target: Path) -> None:
    """Extract the regular files of an archive, refusing links, devices and paths that leave
    ``target``. Done by hand: ``extractall(filter=...)`` needs Python 3.11.4 or later."""
    import shutil  # noqa: PLC0415
    import tarfile  # noqa: PLC0415

    with tarfile.open(archive, "r:*") as tar:
        for member in tar:
            parts = Path(member.name).parts
            if member.name.startswith(("/", "\\")) or ".." in parts or not parts:
                raise tarfile.TarError(f"{member.name!r} is outside the archive's root")
            if member.isdir():
                continue
            if not member.isfile():
                raise tarfile.TarError(f"{member.name!r} is not a regular file")
            destination = target.joinpath(*parts)
            destination.parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(member)
            if source is None:  # pragma: no cover - isfile() members always have data
                raise tarfile.TarError(f"{member.name!r} has no data")
            with source, destination.open("wb") as handle:
                shutil.copyfileobj(source, handle)


def _cached_dir(cache: Path, digest: str) -> Path:
    return cache / digest


def _complete(directory: Path, model_name: str = SERVING_FILE) -> bool:
    return (directory / model_name).is_file() and (directory / MANIFEST_FILE).is_file()


def _publish(staging: Path, final: Path) -> Path:
    """Move a filled staging directory to its digest-keyed place (first writer wins)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    try:
        staging.rename(final)
    except OSError:
        _remove(staging)
    return final


def _remove(directory: Path) -> None:
    import shutil  # noqa: PLC0415

    shutil.rmtree(directory, ignore_errors=True)


def _staging(cache: Path) -> Path:
    import tempfile  # noqa: PLC0415

    cache.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=cache, prefix=".staging-"))


class ModelLocator:
    """Resolves ``MODEL_URI`` into local files, downloading and extracting into ``cache_dir``
    (Lambda's writable /tmp)."""

    def __init__(self, cache_dir: Path, s3: S3Fetcher | None = None) -> None:
        self.cache_dir = cache_dir
        self.s3 = s3 or S3Fetcher()

    def locate(
        self,
        uri: str,
        expected_sha256: str | None = None,
        expected_manifest_sha256: str | None = None,
    ) -> LocatedModel:
        """Local model + manifest for a uri; a pointer is followed once. A pinned manifest
        digest is checked here (the model's digest when the model is loaded)."""
        uri = uri.strip()
        expected = (expected_sha256 or "").strip().lower() or None
        if not uri:
            raise NoModelYet("MODEL_URI is not set")
        if uri.startswith("file://"):
            uri = urlparse(uri).path
        if uri.startswith("s3://"):
            located = self._locate_s3(uri, expected)
        else:
            located = self._locate_local(Path(uri), uri, expected)
        pinned = (expected_manifest_sha256 or "").strip().lower()
        if pinned and located.manifest_path.is_file():
            actual = sha256_file(located.manifest_path)
            if actual != pinned:
                raise ManifestMismatch(
                    f"manifest digest mismatch for {uri}: {MANIFEST_FILE} has sha256 {actual}, "
                    f"expected {pinned}; refusing to serve it"
                )
        return located

    def companion(self, located: LocatedModel, name: str) -> bytes | None:
        """The bytes of a file the artifact keeps beside the model (``reference.json``,
        ``background.json``), or None when there is none. Read on demand: only a route that
        needs one pays for it, never the cold start. The caller checks its digest."""
        path = located.manifest_path.parent / name
        if path.is_file():  # a local model, an extracted archive
            return path.read_bytes()
        if located.uri.startswith("s3://") and not located.uri.split("?", 1)[0].endswith(
            (".tar.gz", ".tgz", ".tar")
        ):
            return self.s3.read(S3Location.parse(located.uri).sibling(name))
        return None

    # --- pointers -----------------------------------------------------------------------
    def _follow_pointer(
        self, raw: bytes | None, uri: str, base: Path | None = None
    ) -> LocatedModel:
        if raw is None:
            raise NoModelYet(f"no model has been promoted yet ({uri} does not exist)")
        # msgspec costs ~10-20 ms to import: only the version that follows a pointer pays it.
        from onnxkit.contract.pointer import PointerError, parse_pointer  # noqa: PLC0415

        try:
            pointer = parse_pointer(raw)
        except PointerError as error:
            raise ModelSourceError(f"invalid production pointer {uri}: {error}") from None
        target = pointer.model_uri
        if target.endswith(".json"):
            raise ModelSourceError(f"production pointer {uri} names no model file")
        if "://" not in target and not Path(target).is_absolute():
            if base is None:
                raise ModelSourceError(f"production pointer {uri} names a relative {target}")
            target = str(base / target)
        return self.locate(target, pointer.sha256, pointer.manifest_sha256)

    # --- local --------------------------------------------------------------------------
    def _locate_local(self, path: Path, uri: str, expected: str | None) -> LocatedModel:
        if path.suffix == ".json" and path.name != MANIFEST_FILE:
            # A work directory's pointer, models/<name>/production.json: its paths are relative
            # to the work directory, so a copied or moved one serves its own files.
            base = path.parent.parent.parent if path.parent.parent.name == "models" else path.parent
            raw = path.read_bytes() if path.is_file() else None
            return self._follow_pointer(raw, uri, base)
        if path.name == MANIFEST_FILE:
            path = path.parent
        if path.is_dir():
            return LocatedModel(path / SERVING_FILE, path / MANIFEST_FILE, expected, uri)
        if not path.is_file():
            raise ModelSourceError(f"no model at {uri}")
        if path.name.endswith((".tar.gz", ".tgz", ".tar")):
            directory = self._extract(path, sha256_file(path))
            return LocatedModel(directory / SERVING_FILE, directory / MANIFEST_FILE, expected, uri)
        return LocatedModel(path, path.parent / MANIFEST_FILE, expected, uri)

    def _extract(self, archive: Path, archive_digest: str) -> Path:
        final = _cached_dir(self.cache_dir, f"tar-{archive_digest}")
        if _complete(final):
            return final
        import tarfile  # noqa: PLC0415
        import zlib  # noqa: PLC0415

        staging = _staging(self.cache_dir)
        try:
            _safe_extract(archive, staging)
        except (tarfile.TarError, OSError, EOFError, zlib.error, ValueError) as error:
            # A truncated or corrupt archive: gzip raises EOFError or zlib.error, not TarError.
            _remove(staging)
            raise ModelSourceError(f"cannot extract {archive.name}: {error}") from None
        if not _complete(staging):
            _remove(staging)
            raise ModelSourceError(f"{archive.name} holds no {SERVING_FILE} and {MANIFEST_FILE}")
        return _publish(staging, final)

    # --- s3 -----------------------------------------------------------------------------
    def _locate_s3(self, uri: str, expected: str | None) -> LocatedModel:
        location = S3Location.parse(uri)
        if location.key.endswith(".json") and not location.key.endswith(MANIFEST_FILE):
            return self._follow_pointer(self.s3.read(location), uri)
        if location.key.endswith((".tar.gz", ".tgz", ".tar")):
            return self._locate_s3_archive(location, uri, expected)
        if location.key.endswith("/") or location.key.endswith(MANIFEST_FILE):
            prefix = location.key.removesuffix(MANIFEST_FILE)
            location = S3Location(location.bucket, prefix + SERVING_FILE, location.version_id)
        if expected:
            cached = _cached_dir(self.cache_dir, expected)
            if _complete(cached):
                return LocatedModel(cached / SERVING_FILE, cached / MANIFEST_FILE, expected, uri)
        staging = _staging(self.cache_dir)
        try:
            self.s3.download(location, staging / SERVING_FILE)
            self.s3.download(location.sibling(MANIFEST_FILE), staging / MANIFEST_FILE)
        except Exception:
            _remove(staging)
            raise
        # Keyed by the digest of what arrived; the caller still compares it with the expected.
        final = _publish(staging, _cached_dir(self.cache_dir, sha256_file(staging / SERVING_FILE)))
        return LocatedModel(final / SERVING_FILE, final / MANIFEST_FILE, expected, uri)

    def _locate_s3_archive(
        self, location: S3Location, uri: str, expected: str | None
    ) -> LocatedModel:
        import tempfile  # noqa: PLC0415

        self.cache_dir.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=self.cache_dir, prefix=".download-", suffix=".tar.gz")
        os.close(handle)
        archive = Path(name)
        try:
            self.s3.download(location, archive)
            directory = self._extract(archive, sha256_file(archive))
        finally:
            archive.unlink(missing_ok=True)
        return LocatedModel(directory / SERVING_FILE, directory / MANIFEST_FILE, expected, uri)
