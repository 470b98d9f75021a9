"""A checkpoint backend on an S3-compatible bucket (MinIO, SeaweedFS, AWS) via the ``minio`` SDK.

The SDK's default HTTP client waits 300 s per read and retries 5 times on its own; this backend
gives it a client with short timeouts and no retries, and retries itself with exponential backoff
(tenacity) on transient errors only, bounded in total time. Auth errors are never retried.
A dead server raises ``urllib3.exceptions.MaxRetryError`` (not ``S3Error``): that is transient too.

Credentials are handed to the SDK and kept out of ``repr``, messages and logs.

Every SDK call passes its arguments by keyword: minio 7.2.19 (withdrawn in 7.2.20) made them
keyword-only, and the planned 8.0 does the same; keywords work on every 7.2 release too.
"""

from __future__ import annotations

import io
import logging
import os
import time
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlsplit

import urllib3
from minio import Minio
from minio.error import InvalidResponseError, S3Error, ServerError
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential,
)

from .base import check_key, check_prefix, normalize_prefix
from .errors import (
    CheckpointAuthError,
    CheckpointError,
    CheckpointNotFound,
    StoreUnavailable,
)
from .limits import ReadLimit, read_limited

log = logging.getLogger(__name__)

T = TypeVar("T")

ENV_ENDPOINT = "SWIPEFL_S3_ENDPOINT"
ENV_ACCESS_KEY = "SWIPEFL_S3_ACCESS_KEY"
ENV_SECRET_KEY = "SWIPEFL_S3_SECRET_KEY"
ENV_BUCKET = "SWIPEFL_S3_BUCKET"
ENV_PREFIX = "SWIPEFL_S3_PREFIX"
ENV_SECURE = "SWIPEFL_S3_SECURE"
ENV_REGION = "SWIPEFL_S3_REGION"
SECRET_ENV_VARS = (ENV_ACCESS_KEY, ENV_SECRET_KEY)


def s3_environment(
    endpoint: str,
    access_key: str,
    secret_key: str,
    bucket: str,
    *,
    prefix: str = "",
    secure: bool = False,
) -> dict[str, str]:
    """The ``SWIPEFL_S3_*`` variables that point a process (ServerApp, CLI, sidecar) at a
    bucket: the one place their names are spelled, the reverse of `S3Backend.from_env`."""
    env = {
        ENV_ENDPOINT: endpoint,
        ENV_ACCESS_KEY: access_key,
        ENV_SECRET_KEY: secret_key,
        ENV_BUCKET: bucket,
        ENV_SECURE: "true" if secure else "false",
    }
    if prefix:
        env[ENV_PREFIX] = prefix
    return env


_NOT_FOUND_CODES = {"NoSuchKey", "NoSuchBucket", "NotFound", "ResourceNotFound", "NoSuchObject"}
_AUTH_CODES = {
    "AccessDenied",
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    "AllAccessDisabled",
    "InvalidSecurity",
    "AccountProblem",
    "AuthorizationHeaderMalformed",
    "MissingSecurityHeader",
    "RequestTimeTooSkewed",
}
_TRANSIENT_CODES = {
    "InternalError",
    "ServiceUnavailable",
    "SlowDown",
    "RequestTimeout",
    "OperationAborted",
    "XMinioServerNotInitialized",
}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _status(exc: BaseException) -> int | None:
    if isinstance(exc, S3Error):
        return getattr(exc.response, "status", None)
    if isinstance(exc, ServerError):
        return exc.status_code
    if isinstance(exc, InvalidResponseError):
        code = getattr(exc, "_code", None)
        return code if isinstance(code, int) else None
    return None


def _is_auth(exc: BaseException) -> bool:
    if isinstance(exc, S3Error) and exc.code in _AUTH_CODES:
        return True
    return isinstance(exc, S3Error | ServerError | InvalidResponseError) and _status(exc) in (
        401,
        403,
    )


def _is_not_found(exc: BaseException) -> bool:
    return isinstance(exc, S3Error) and (exc.code in _NOT_FOUND_CODES or _status(exc) == 404)


def is_transient(exc: BaseException) -> bool:
    """Errors worth retrying: unreachable server, broken connection, timeouts, 5xx/429/408."""
    if isinstance(exc, CheckpointError):
        return False
    if isinstance(exc, S3Error):
        if exc.code in _AUTH_CODES:
            return False
        status = _status(exc) or 0
        return exc.code in _TRANSIENT_CODES or status >= 500 or status in (408, 429)
    if isinstance(exc, ServerError | InvalidResponseError):
        status = _status(exc) or 0
        return status >= 500 or status in (408, 429)
    # MaxRetryError (dead server), ProtocolError, ReadTimeoutError, NewConnectionError, ...
    return isinstance(exc, urllib3.exceptions.HTTPError | OSError)


def _short_reason(exc: BaseException) -> str:
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        exc = exc.reason
    if isinstance(exc, S3Error):
        return f"{exc.code} (HTTP {_status(exc)})"
    if isinstance(exc, ServerError | InvalidResponseError):
        return f"HTTP {_status(exc)}"
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _parse_bool(name: str, value: str | None, default: bool = False) -> bool:
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return default if lowered == "" else False
    raise CheckpointError(f"{name} must be one of 1/0, true/false, yes/no, on/off")


class S3Backend:
    """Objects in ``bucket`` under ``prefix``; see the module docstring for errors and retries."""

    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        bucket: str,
        prefix: str = "",
        secure: bool = False,
        region: str | None = None,
        *,
        create_bucket: bool = True,
        connect_timeout: float = 3.0,
        read_timeout: float = 20.0,
        max_attempts: int = 4,
        max_retry_s: float = 15.0,
        backoff_s: float = 0.25,
    ) -> None:
        if not endpoint:
            raise CheckpointError("S3 endpoint is empty")
        if "://" in endpoint:
            parts = urlsplit(endpoint)
            if parts.scheme not in ("http", "https") or parts.path not in ("", "/"):
                raise CheckpointError(
                    "S3 endpoint must be host[:port] or http(s)://host[:port] without a path"
                )
            secure = parts.scheme == "https"
            endpoint = parts.netloc.rsplit("@", 1)[-1]  # never keep userinfo
        if not bucket:
            raise CheckpointError("S3 bucket name is empty")
        if not access_key or not secret_key:
            raise CheckpointError("S3 access key and secret key are required")
        self.endpoint = endpoint
        self.bucket = bucket
        self.prefix = normalize_prefix(prefix)
        self.secure = bool(secure)
        self.region = region or None
        self.create_bucket = create_bucket
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_attempts = max(1, int(max_attempts))
        self.max_retry_s = max_retry_s
        self.backoff_s = backoff_s
        self._bucket_ready = False
        # Values the store redacts from manifests; never printed.
        self._sensitive = (access_key, secret_key)
        pool_kwargs: dict = {}
        if self.secure:
            import certifi

            pool_kwargs = {
                "cert_reqs": "CERT_REQUIRED",
                "ca_certs": os.environ.get("SSL_CERT_FILE") or certifi.where(),
            }
        http_client = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
            retries=urllib3.Retry(total=0, redirect=False),
            maxsize=4,
            **pool_kwargs,
        )
        try:
            self._client = Minio(
                endpoint=endpoint,
                access_key=access_key,
                secret_key=secret_key,
                secure=self.secure,
                region=self.region,
                http_client=http_client,
            )
        except ValueError as exc:
            raise CheckpointError(f"invalid S3 endpoint {endpoint!r}: {exc}") from None

    @classmethod
    def from_env(cls, prefix: str | None = None, **kwargs) -> S3Backend:
        """Build from ``SWIPEFL_S3_*`` variables; ``prefix`` is joined under ``SWIPEFL_S3_PREFIX``.

        Required: SWIPEFL_S3_ENDPOINT, SWIPEFL_S3_ACCESS_KEY, SWIPEFL_S3_SECRET_KEY,
        SWIPEFL_S3_BUCKET. Optional: SWIPEFL_S3_PREFIX, SWIPEFL_S3_SECURE, SWIPEFL_S3_REGION.
        """
        env = os.environ
        required = (ENV_ENDPOINT, ENV_ACCESS_KEY, ENV_SECRET_KEY, ENV_BUCKET)
        missing = [name for name in required if not env.get(name)]
        if missing:
            raise CheckpointError(
                "the S3 checkpoint store needs these environment variables set: "
                + ", ".join(missing)
            )
        base_prefix = normalize_prefix(env.get(ENV_PREFIX, ""))
        full_prefix = base_prefix + normalize_prefix(prefix)
        return cls(
            env[ENV_ENDPOINT],
            env[ENV_ACCESS_KEY],
            env[ENV_SECRET_KEY],
            env[ENV_BUCKET],
            prefix=full_prefix,
            secure=_parse_bool(ENV_SECURE, env.get(ENV_SECURE)),
            region=env.get(ENV_REGION) or None,
            **kwargs,
        )

    def __repr__(self) -> str:
        return (
            f"S3Backend(endpoint={self.endpoint!r}, bucket={self.bucket!r}, "
            f"prefix={self.prefix!r}, secure={self.secure})"
        )

    def describe(self) -> str:
        scheme = "https" if self.secure else "http"
        return f"S3 store s3://{self.bucket}/{self.prefix} at {scheme}://{self.endpoint}"

    # -- retries and error translation ---------------------------------------------------------

    def _call(self, what: str, key: str, fn: Callable[[], T]) -> T:
        attempts = 0
        started = time.monotonic()
        retrying = Retrying(
            stop=stop_after_attempt(self.max_attempts) | stop_before_delay(self.max_retry_s),
            wait=wait_exponential(multiplier=self.backoff_s, min=self.backoff_s, max=4.0),
            retry=retry_if_exception(is_transient),
            reraise=True,
            before_sleep=lambda state: log.warning(
                "%s: %s %s failed (attempt %d), retrying: %s",
                self.describe(),
                what,
                key,
                state.attempt_number,
                _short_reason(state.outcome.exception()),
            ),
        )
        try:
            for attempt in retrying:
                with attempt:
                    attempts += 1
                    return fn()
        except Exception as exc:  # translated below; the original is chained
            raise self._translate(exc, what, key, attempts, time.monotonic() - started) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _translate(
        self, exc: Exception, what: str, key: str, attempts: int, elapsed: float
    ) -> Exception:
        if isinstance(exc, CheckpointError):
            return exc
        where = f"{self.describe()}"
        if _is_not_found(exc):
            return CheckpointNotFound(f"{key} not found in {where}")
        if _is_auth(exc):
            return CheckpointAuthError(
                f"{where} refused the credentials ({what} {key}): {_short_reason(exc)}; check "
                f"{ENV_ACCESS_KEY} / {ENV_SECRET_KEY} and the bucket's permissions"
            )
        if is_transient(exc):
            return StoreUnavailable(
                f"{where} unavailable: {what} {key} failed after {attempts} attempt(s) in "
                f"{elapsed:.1f}s: {_short_reason(exc)}"
            )
        if isinstance(exc, S3Error):
            return CheckpointError(f"{where}: {what} {key} failed: {exc.code}: {exc.message}")
        return CheckpointError(f"{where}: {what} {key} failed: {_short_reason(exc)}")

    # -- the object API --------------------------------------------------------------------

    def _name(self, key: str) -> str:
        return self.prefix + check_key(key)

    def ensure_bucket(self) -> None:
        if self._bucket_ready:
            return

        def ensure() -> None:
            if self._client.bucket_exists(bucket_name=self.bucket):
                return
            if not self.create_bucket:
                raise CheckpointNotFound(
                    f"bucket {self.bucket!r} does not exist ({self.describe()})"
                )
            try:
                self._client.make_bucket(bucket_name=self.bucket, location=self.region)
                log.info("created bucket %s at %s", self.bucket, self.endpoint)
            except S3Error as exc:
                if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise

        self._call("create bucket", self.bucket, ensure)
        self._bucket_ready = True

    def put_bytes(self, key: str, data: bytes) -> None:
        name = self._name(key)
        self.ensure_bucket()
        data = bytes(data)

        def put() -> None:
            self._client.put_object(
                bucket_name=self.bucket, object_name=name, data=io.BytesIO(data), length=len(data)
            )

        self._call("write", key, put)

    def get_bytes(self, key: str, *, limit: ReadLimit | None = None) -> bytes:
        name = self._name(key)

        def get() -> bytes:
            if limit is not None:
                limit.check_deadline(key)  # also before a retry
            response = self._client.get_object(bucket_name=self.bucket, object_name=name)
            try:
                if limit is None:
                    return response.read()
                declared = response.headers.get("Content-Length")
                if declared is not None and declared.isdigit():
                    limit.check_size(int(declared), key)  # refused before its body is read
                # read1: at most one socket read per call, so the deadline is checked often
                # even when a server trickles bytes.
                read_some = getattr(response, "read1", response.read)
                return read_limited(read_some, limit, key)
            finally:
                response.close()
                response.release_conn()

        return self._call("read", key, get)

    def exists(self, key: str) -> bool:
        name = self._name(key)

        def stat() -> bool:
            try:
                self._client.stat_object(bucket_name=self.bucket, object_name=name)
            except S3Error as exc:
                if _is_not_found(exc):
                    return False
                raise
            return True

        return self._call("check", key, stat)

    def list(self, prefix: str) -> list[str]:
        check_prefix(prefix)
        full = self.prefix + prefix
        cut = len(self.prefix)

        def listing() -> list[str]:
            try:
                objects = self._client.list_objects(
                    bucket_name=self.bucket, prefix=full, recursive=True
                )
                names = [o.object_name for o in objects if not o.is_dir]
            except S3Error as exc:
                if exc.code == "NoSuchBucket":
                    return []
                raise
            return sorted(n[cut:] for n in names if n and not n.endswith("/"))

        return self._call("list", prefix or "/", listing)

    def delete(self, key: str) -> None:
        name = self._name(key)

        def remove() -> None:
            try:
                self._client.remove_object(bucket_name=self.bucket, object_name=name)
            except S3Error as exc:
                if not _is_not_found(exc):
                    raise

        self._call("delete", key, remove)

    def _redact_values(self) -> tuple[str, ...]:
        return self._sensitive
