"""The S3 backend: objects and refs in an S3 bucket, changed by conditional writes, no locks.

A store at ``s3://BUCKET/PREFIX`` keeps object ``<id>`` at ``PREFIX/objects/<id>`` and ref
``<name>`` at ``PREFIX/refs/<name>``. It implements the backend protocol
(:mod:`modelreg.storage.backend`), version 2, in which a ref holds a small opaque body
(at most :data:`MAX_REF_BODY` bytes) rather than an object id:

- An object is created with ``PutObject`` and ``If-None-Match: *``: a 412 (or a 409, a
  concurrent create in flight) means it is already there, and since an object's key is the
  sha256 of its bytes, whatever is there is the same object. Every read re-hashes. Storing
  an object that is already there also writes an empty mark, ``PREFIX/reused/<id>``, whose
  date :meth:`S3Objects.stat` reports as the object's (S3 cannot touch a key in place), so
  that ``gc``'s grace period spares an object a writer is about to name; if ``gc`` removed
  the object meanwhile, it is stored again.
- A ref is read with ``GetObject``; its ETag is the version token. It is created with
  ``If-None-Match: *``, replaced with ``If-Match: <ETag>`` and deleted with ``DeleteObject``
  and ``If-Match: <ETag>``. S3 applies each of these atomically, so of several writers
  holding one token exactly one wins; the others get 412 (or 409, or 404 if the ref was
  deleted) and are told False.

**The rule callers keep.** An ETag names a body's *content* (for a single-part upload it is
the MD5 of the bytes), so a ref that went from body X to Y and back to X carries X's old
ETag again, and a writer still holding that token would win a swap it should lose (ABA).
Callers therefore never write a body the ref held before; the registry's state document
names its parent commit, so a new body always differs from every earlier one.

**Retries.** botocore retries network errors, timeouts, 5xx and throttling (its ``standard``
mode, :data:`MAX_ATTEMPTS` attempts in all); what still fails becomes a
:class:`ConflictError` ("try again", exit 4). A conditional write whose first attempt landed
but whose answer was lost is retried and then refused (412) by its own earlier success; when
botocore reports it retried, the backend reads the ref back and counts the write as won if
the ref holds exactly the body it wrote (or, for a delete, is gone). Two writers of one
token that happen to write byte-identical bodies, one of them retried, could then both be
told they won; both meant the same new state, which is what the ref holds.

**Endpoints that ignore conditions.** An S3-compatible server that ignores ``If-None-Match``
or ``If-Match`` would let every writer win and silently lose updates. Before the first ref
write of a process to an endpoint and bucket, :func:`check_conditional_writes` probes them
(two requests that repeat the creation of the commit the change has just stored), and a
ref write that relies on a condition the endpoint did not honour is refused with a
:class:`UsageError`: swaps need both conditional puts, :meth:`S3Refs.delete_if` the
conditional delete (which some servers lack while having the puts; probed on a key of its
own under ``PREFIX/probe/`` the first time it is needed). The verdict is kept for the
process.

**Large files.** An object's key is its digest, which is known only once every byte has been
read, while a multipart upload names its key when it starts. So :meth:`S3Objects.put_file`
hashes a file larger than the multipart threshold first (one local read pass), asks whether
the object is already stored (then nothing is uploaded), and only then uploads it in parts
to its final key, hashing again as the parts go; ``CompleteMultipartUpload`` carries
``If-None-Match: *`` (S3 and moto honour it there), and if the second pass does not hash to
the first (the file changed meanwhile) the upload is aborted before it completes. Uploading
to a temporary key and copying would stream in one pass but costs a server-side copy of
every large object, a second key to clean up after a crash, and ``UploadPartCopy`` beyond
5 GB. Files up to the threshold are read once into memory and sent in one ``PutObject``
with their sha256 as ``x-amz-checksum-sha256``, which S3 checks against what it received.

Credentials, region and endpoint come from the standard AWS chain (``AWS_ACCESS_KEY_ID``,
``AWS_PROFILE``, ``AWS_ENDPOINT_URL``, ...). boto3 is imported only by :func:`open_s3`, and
nothing imports this module unless an ``s3://`` store is opened. docs/s3.md has the request
count of each operation and the IAM permissions needed.
"""

from __future__ import annotations

import base64
import contextlib
import io
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, NoReturn

from modelreg.errors import (
    ConflictError,
    IntegrityError,
    ModelregError,
    NotFound,
    ObjectMissing,
    PolicyDenied,
    UsageError,
)
from modelreg.storage.copying import copy_stream
from modelreg.storage.hashing import (
    CHUNK_SIZE,
    Progress,
    digest_bytes,
    digest_file,
    is_object_id,
    new_hasher,
)
from modelreg.storage.refs import check_ref_name

if TYPE_CHECKING:
    from botocore.exceptions import ClientError

__all__ = [
    "CONNECT_TIMEOUT",
    "LIST_PAGE",
    "MAX_ATTEMPTS",
    "MAX_REF_BODY",
    "MULTIPART_THRESHOLD",
    "PART_SIZE",
    "READ_TIMEOUT",
    "S3Location",
    "S3Objects",
    "S3Refs",
    "check_conditional_writes",
    "open_s3",
]

MULTIPART_THRESHOLD = 64 << 20
"""Files larger than this go up as a multipart upload; smaller ones in one ``PutObject``."""

PART_SIZE = 16 << 20
"""The size of each part of a multipart upload (S3 wants at least 5 MiB, 10,000 at most)."""

_MAX_PARTS = 10_000

_STORE_TRIES = 5
"""Times an object is stored again when it vanishes (``gc``) while being re-used."""

MAX_REF_BODY = 1 << 20
"""The largest ref body, in bytes."""

LIST_PAGE = 1000
"""Keys asked for per ``ListObjectsV2`` request (S3's own maximum)."""

MAX_ATTEMPTS = 5
"""Attempts per request, the first included, in botocore's ``standard`` retry mode."""

CONNECT_TIMEOUT = 10.0
"""Seconds a request waits to connect; then it is retried like any connection error."""

READ_TIMEOUT = 60.0
"""Seconds a request waits for each read of its answer; then it is retried like a connection
error (a write that landed meanwhile has lost its answer: see "Retries" above)."""

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\Z")
_PREFIX_PART = re.compile(r"^[A-Za-z0-9._-]+\Z")
_IP_ADDRESS = re.compile(r"^\d+\.\d+\.\d+\.\d+\Z")

# Error codes, as botocore reports them.
_CONDITION_FAILED = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict", "409"})
_NO_KEY = frozenset({"NoSuchKey", "404", "NotFound"})
_DENIED = frozenset({"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch",
                     "ExpiredToken", "InvalidToken", "AllAccessDisabled", "403", "Forbidden"})


@dataclass(frozen=True)
class S3Location:
    """Where a store lives: a bucket and a key prefix (``""`` for the bucket's root)."""

    bucket: str
    prefix: str

    @classmethod
    def parse(cls, url: str) -> S3Location:
        """Read ``s3://BUCKET`` or ``s3://BUCKET/PREFIX``.

        Args:
            url: The store's URL. A trailing ``/`` is allowed.

        Returns:
            The location.

        Raises:
            UsageError: The URL is not of that form, the bucket name breaks S3's naming
                rules, or a prefix segment is empty, ``.``, ``..`` or has characters other
                than letters, digits, ``.``, ``_`` and ``-``.
        """
        if not url.startswith("s3://"):
            raise UsageError(f"not an S3 URL: {url!r} (expected s3://BUCKET/PREFIX)")
        bucket, _, prefix = url[len("s3://"):].partition("/")
        if not _BUCKET.match(bucket) or ".." in bucket or _IP_ADDRESS.match(bucket):
            raise UsageError(
                f"malformed S3 bucket name {bucket!r} in {url!r}: 3 to 63 lowercase letters, "
                "digits, '.' and '-', starting and ending with a letter or digit")
        prefix = prefix.rstrip("/")
        for part in prefix.split("/") if prefix else ():
            if part in (".", "..") or not _PREFIX_PART.match(part):
                raise UsageError(
                    f"malformed S3 prefix {prefix!r} in {url!r}: each '/'-separated segment "
                    "must be letters, digits, '.', '_' or '-' (and not '.' or '..')")
        return cls(bucket, prefix)

    def key(self, *parts: str) -> str:
        """Return the key of ``parts`` joined under the prefix."""
        return "/".join((self.prefix, *parts) if self.prefix else parts)

    def url(self, *parts: str) -> str:
        """Return the ``s3://`` URL of ``parts`` under the prefix (how messages name keys)."""
        return f"s3://{self.bucket}/{self.key(*parts)}"

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"


@dataclass(frozen=True)
class _Refused:
    """An expected error answer: its S3 code, and whether botocore had retried."""

    code: str
    retried: bool


class _Bucket:
    """One client on one bucket: requests, with S3's errors turned into modelreg's."""

    def __init__(self, client: Any, location: S3Location, max_attempts: int) -> None:
        self.client = client
        self.location = location
        self.max_attempts = max_attempts
        self.endpoint = str(client.meta.endpoint_url)
        self._bucket_seen = False
        self.sample: tuple[str, bytes] | None = None
        """A small object this client created (key, bytes): the conditional-write probe
        repeats its creation, harmless whatever the endpoint does."""

    def call(self, operation: str, where: str, expect: frozenset[str] = frozenset(),
             **params: Any) -> Any:
        """Make one request (botocore retries it); return its answer or a :class:`_Refused`.

        Args:
            operation: The client method, such as ``put_object``.
            where: The key or prefix it concerns, for messages.
            expect: Error codes the caller handles: returned as :class:`_Refused`.
            **params: The request's parameters (the bucket is added).

        Returns:
            botocore's response dict, or a :class:`_Refused` for an expected error.

        Raises:
            NotFound: The bucket does not exist.
            PolicyDenied: The credentials were refused, or lack a permission.
            ConflictError: The endpoint could not be reached, or kept failing (5xx).
            UsageError: No credentials or region, or another request S3 refused.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            answer = getattr(self.client, operation)(Bucket=self.location.bucket, **params)
        except ClientError as exc:
            code = _code(exc)
            if code in expect:
                return _Refused(code, _retries(exc) > 0)
            self.fail(exc, where)
        except BotoCoreError as exc:
            self.unreachable(exc, where)
        self._bucket_seen = True
        return answer

    def fail(self, exc: ClientError, where: str) -> NoReturn:
        """Raise the modelreg error for an S3 error answer."""
        code = _code(exc)
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        message = exc.response.get("Error", {}).get("Message") or code
        if code == "NoSuchBucket":
            raise NotFound(self.no_bucket()) from exc
        if code in _DENIED or status == 403:
            raise PolicyDenied(
                f"S3 refused access to {self.url_of(where)} ({code}: {message}); check "
                "the credentials (AWS_ACCESS_KEY_ID, AWS_PROFILE) and that they allow "
                "s3:GetObject, s3:PutObject, s3:DeleteObject and s3:ListBucket there "
                "(docs/s3.md)") from exc
        if (status >= 500 and status != 501) or code in ("SlowDown", "RequestTimeout"):
            raise ConflictError(
                f"S3 at {self.endpoint} kept failing on {self.url_of(where)} after "
                f"{self.max_attempts} attempts ({code}: {message}); try again later") from exc
        raise UsageError(
            f"S3 refused a request on {self.url_of(where)} ({status} {code}: "
            f"{message})") from exc

    def unreachable(self, exc: Exception, where: str) -> NoReturn:
        """Raise the modelreg error for a request that got no answer (or no credentials).

        botocore's other errors (a parameter it refuses, say) are modelreg's bugs and go
        up as they are.
        """
        from botocore import exceptions as bce

        if isinstance(exc, bce.NoCredentialsError | bce.PartialCredentialsError
                      | bce.CredentialRetrievalError):
            raise UsageError(
                f"no usable AWS credentials for {self.location} ({exc}): set "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE") from exc
        if isinstance(exc, bce.NoRegionError):
            raise UsageError(f"no AWS region for {self.location}: set AWS_DEFAULT_REGION "
                             "or a profile's region") from exc
        if isinstance(exc, bce.ConnectionError | bce.HTTPClientError
                      | bce.IncompleteReadError):
            raise ConflictError(
                f"cannot reach S3 at {self.endpoint} for {self.url_of(where)} after "
                f"{self.max_attempts} attempts ({exc}); try again later") from exc
        raise exc

    def list(self, prefix: str, delimiter: str = "") -> Iterator[str]:
        """Yield the keys under ``prefix``, without it, in order, a page a request.

        With a ``delimiter``, only the keys with none after the prefix (no "folders").
        """
        token: str | None = None
        while True:
            more: dict[str, Any] = {"ContinuationToken": token} if token else {}
            if delimiter:
                more["Delimiter"] = delimiter
            page = self.call("list_objects_v2", prefix, Prefix=prefix, MaxKeys=LIST_PAGE,
                             **more)
            for entry in page.get("Contents", ()):
                yield entry["Key"][len(prefix):]
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return

    def missing_key(self, where: str) -> None:
        """After a HEAD's bare 404, raise NotFound if it is the bucket that is missing."""
        if self._bucket_seen:
            return
        answer = self.call("head_bucket", where, _NO_KEY | {"NoSuchBucket"})
        if isinstance(answer, _Refused):  # a HEAD's answer has no body, so no code either
            raise NotFound(self.no_bucket())

    def url_of(self, key: str) -> str:
        """Return the ``s3://`` URL of a key of this bucket."""
        return f"s3://{self.location.bucket}/{key}"

    def no_bucket(self) -> str:
        """The message for a bucket that does not exist."""
        return (f"S3 bucket {self.location.bucket!r} does not exist at {self.endpoint}: "
                "create it, or check the bucket name and the endpoint (AWS_ENDPOINT_URL)")

    def read_body(self, body: Any, where: str) -> bytes:
        """Read a response's body to its end."""
        from botocore.exceptions import BotoCoreError

        try:
            with body:
                return bytes(body.read())
        except BotoCoreError as exc:
            self.unreachable(exc, where)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _retries(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("RetryAttempts", 0))


def _b64(hex_digest: str) -> str:
    """A sha256 as S3's ``x-amz-checksum-sha256`` carries it: base64 of the raw digest."""
    return base64.b64encode(bytes.fromhex(hex_digest)).decode()


def _checksum(data: bytes) -> str:
    """The ``x-amz-checksum-sha256`` of ``data``."""
    return _b64(digest_bytes(data))


class S3Objects:
    """Content-addressed objects under ``PREFIX/objects/`` in a bucket."""

    def __init__(self, bucket: _Bucket, *, multipart_threshold: int = MULTIPART_THRESHOLD,
                 part_size: int = PART_SIZE) -> None:
        self._s3 = bucket
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size

    def key(self, oid: str) -> str:
        """Return the key of object ``oid``.

        Raises:
            IntegrityError: ``oid`` is not a well-formed id (a corrupt reference).
        """
        if not is_object_id(oid):
            raise IntegrityError(f"malformed object id {oid!r}")
        return self._s3.location.key("objects", oid)

    def where(self, oid: str) -> str:
        """How messages name an object of this store."""
        return self._s3.location.url("objects", oid)

    def put_bytes(self, data: bytes) -> str:
        """Store ``data`` unless present (one conditional ``PutObject``); return its id."""
        oid = digest_bytes(data)
        self._put(oid, data)
        return oid

    def _put(self, oid: str, data: bytes) -> bool:
        """Create object ``oid`` from ``data`` (whose digest it is) unless it is there.

        Returns:
            True if this call created it, False if it was there (and is marked re-used).
        """
        for _ in range(_STORE_TRIES):
            answer = self._s3.call(
                "put_object", self.key(oid), _CONDITION_FAILED, Key=self.key(oid), Body=data,
                IfNoneMatch="*", ChecksumSHA256=_b64(oid))
            if not isinstance(answer, _Refused):
                if len(data) <= _SAMPLE_MAX:
                    self._s3.sample = (self.key(oid), data)
                return True
            if self._reuse(oid):
                return False
        raise self._vanishing(oid)

    def _vanishing(self, oid: str) -> ConflictError:
        """The error for an object S3 keeps calling present (412) and then absent (404)."""
        return ConflictError(
            f"object {oid} was refused as already stored and then found missing "
            f"{_STORE_TRIES} times in a row ({self.where(oid)}): something deletes it as it "
            "is stored (a gc running with no grace period?); try again")

    def _reuse_key(self, oid: str) -> str:
        return self._s3.location.key("reused", oid)

    def _reuse(self, oid: str) -> bool:
        """Record that an existing object was stored again; False if it is gone meanwhile.

        S3 cannot touch an object in place (a copy onto itself would, up to 5 GB), so the
        time of re-use is the date of an empty key ``PREFIX/reused/<id>``, which
        :meth:`stat` reads beside the object's own. If ``gc`` removed the object before the
        mark landed, the caller stores it again.
        """
        self._s3.call("put_object", self._reuse_key(oid), Key=self._reuse_key(oid), Body=b"")
        return self._head(self.key(oid)) is not None

    def sync(self) -> None:
        """Nothing to do: S3 acknowledges a write only once it is durable."""

    def put_file(self, source: Path, progress: Progress | None = None) -> tuple[str, int]:
        """Store a file (see :meth:`store_file`); return its id and size."""
        oid, size, _ = self.store_file(source, progress)
        return oid, size

    def store_file(self, source: Path, progress: Progress | None = None
                   ) -> tuple[str, int, bool]:
        """Store a file; return its id, its size and whether this call created the object.

        Up to ``multipart_threshold`` bytes, the file is read once and sent in one request.
        A larger file is hashed first, skipped if already stored, else uploaded in parts of
        ``part_size`` bytes (memory use: one part), re-hashed as the parts are read, and
        completed with ``If-None-Match: *`` (the module docstring says why two passes).

        Args:
            source: The file.
            progress: Called with the byte count of each chunk sent (or, for a large file
                already stored, once with its size); the counts add up to the size.

        Returns:
            The object id, the size in bytes, and whether this call created the object.

        Raises:
            ConflictError: The file changed between the two passes; nothing was stored.
        """
        if source.stat().st_size <= self.multipart_threshold:
            buffer = io.BytesIO()
            with open(source, "rb") as fh:
                oid, size = copy_stream(fh, buffer, progress)
            return oid, size, self._put(oid, buffer.getvalue())
        oid, size = digest_file(source)
        sent = False  # progress is told of the bytes once, however many tries it takes
        for _ in range(_STORE_TRIES):
            if self.contains(oid) and self._reuse(oid):
                if progress is not None and not sent:
                    progress(size)
                return oid, size, False
            if self._upload_parts(source, oid, size, None if sent else progress):
                return oid, size, True
            sent = True
        raise self._vanishing(oid)

    def _upload_parts(self, source: Path, oid: str, size: int,
                      progress: Progress | None) -> bool:
        """Upload ``source`` as object ``oid`` in parts; abort unless it still hashes to it.

        Returns:
            True if the upload completed; False if the object appeared meanwhile (the
            completion was refused, the upload aborted).
        """
        key = self.key(oid)
        part_size = max(self.part_size, -(-size // _MAX_PARTS))
        upload = self._s3.call("create_multipart_upload", key, Key=key,
                               ChecksumAlgorithm="SHA256")["UploadId"]
        completed = False
        try:
            hasher = new_hasher()
            parts: list[dict[str, Any]] = []
            sent = 0
            with open(source, "rb") as fh:  # the bytes hashed, and no more if it grew
                while data := fh.read(min(part_size, size - sent)):
                    hasher.update(data)
                    part: dict[str, Any] = {"PartNumber": len(parts) + 1,
                                            "ChecksumSHA256": _checksum(data)}
                    answer = self._s3.call("upload_part", key, Key=key, UploadId=upload,
                                           Body=data, **part)
                    parts.append({**part, "ETag": answer["ETag"]})
                    sent += len(data)
                    if progress is not None:
                        progress(len(data))
            if hasher.hexdigest() != oid or sent != size:
                raise ConflictError(
                    f"{source} changed while it was being stored (it no longer hashes to "
                    "the digest read a moment before); nothing was stored, try again")
            answer = self._s3.call("complete_multipart_upload", key, _CONDITION_FAILED,
                                   Key=key, UploadId=upload, IfNoneMatch="*",
                                   MultipartUpload={"Parts": parts})
            completed = not isinstance(answer, _Refused)
        finally:
            if not completed:  # a refused completion too: the parts would linger (and cost)
                with contextlib.suppress(ModelregError):  # not to hide why it stopped
                    self._s3.call("abort_multipart_upload", key, frozenset({"NoSuchUpload"}),
                                  Key=key, UploadId=upload)
        return completed

    def _open(self, oid: str) -> Any:
        """GetObject on ``oid``; its body stream, or ObjectMissing."""
        key = self.key(oid)
        answer = self._s3.call("get_object", key, frozenset({"NoSuchKey"}), Key=key)
        if isinstance(answer, _Refused):
            raise ObjectMissing(f"object {oid} is missing ({self.where(oid)})", self.where(oid))
        return answer["Body"]

    def _corrupt(self, oid: str) -> IntegrityError:
        return IntegrityError(f"object {oid} is corrupt: its content does not match its "
                              f"digest ({self.where(oid)})", self.where(oid))

    def get_bytes(self, oid: str) -> bytes:
        """Return an object's bytes, verified (one ``GetObject``).

        Raises:
            ObjectMissing: No such object.
            IntegrityError: Its bytes do not hash to ``oid``.
        """
        body = self._open(oid)
        data = self._s3.read_body(body, self.key(oid))
        if digest_bytes(data) != oid:
            raise self._corrupt(oid)
        return data

    def copy_to(self, oid: str, dst: BinaryIO, progress: Progress | None = None) -> int:
        """Stream an object out, verifying its digest at the end; return its size.

        Raises:
            ObjectMissing: No such object.
            IntegrityError: Its bytes do not hash to ``oid`` (discard what was written).
            ConflictError: The connection broke mid-stream.
        """
        found, size = self._stream(oid, dst.write, progress)
        if found != oid:
            raise self._corrupt(oid)
        return size

    def _stream(self, oid: str, sink: Callable[[bytes], object],
                progress: Progress | None) -> tuple[str, int]:
        """Feed an object's bytes to ``sink`` in chunks; return their digest and count."""
        from botocore.exceptions import BotoCoreError

        body = self._open(oid)
        hasher = new_hasher()
        size = 0
        try:
            with body:
                for chunk in body.iter_chunks(CHUNK_SIZE):
                    hasher.update(chunk)
                    sink(chunk)
                    size += len(chunk)
                    if progress is not None:
                        progress(len(chunk))
        except BotoCoreError as exc:
            self._s3.unreachable(exc, self.key(oid))
        return hasher.hexdigest(), size

    def _head(self, key: str) -> Any:
        """HeadObject: the answer, or None if there is no such key."""
        answer = self._s3.call("head_object", key, _NO_KEY, Key=key)
        if isinstance(answer, _Refused):
            self._s3.missing_key(key)
            return None
        return answer

    def contains(self, oid: str) -> bool:
        """Tell whether the object is stored (one ``HeadObject``)."""
        return self._head(self.key(oid)) is not None

    def stat(self, oid: str) -> tuple[float, int] | None:
        """Return when the object was last stored or re-used (epoch seconds) and its size.

        Two ``HeadObject`` requests: the object's, and its re-use mark's (:meth:`_reuse`).
        None if the object is not stored.
        """
        found = self._head(self.key(oid))
        if found is None:
            return None
        mark = self._head(self._reuse_key(oid))
        when = max(found["LastModified"].timestamp(),
                   mark["LastModified"].timestamp() if mark is not None else 0.0)
        return when, int(found["ContentLength"])

    def verify(self, oid: str) -> bool:
        """Re-hash the object as it streams (one ``GetObject``); False if missing or corrupt."""
        try:
            found, _ = self._stream(oid, lambda chunk: None, None)
        except ObjectMissing:
            return False
        return found == oid

    def ids(self) -> Iterator[str]:
        """Yield every stored id, sorted (``ListObjectsV2``, 1,000 keys a request)."""
        return (oid for oid in self._s3.list(self._s3.location.key("objects", ""))
                if is_object_id(oid))

    def remove(self, oid: str) -> None:
        """Delete an object and its re-use mark (two ``DeleteObject``); no error if absent."""
        self._s3.call("delete_object", self.key(oid), Key=self.key(oid))
        self._s3.call("delete_object", self._reuse_key(oid), Key=self._reuse_key(oid))

    def remove_unless_reused(self, oid: str, since: float) -> bool:
        """Delete an object for ``gc``; False if a writer re-used it after ``since``.

        The object is deleted first, then its re-use mark is read. A mark dated after
        ``since`` was written by a writer that may have found the object still there and
        gone on to name it (:meth:`_reuse`): the mark is kept and False returned, and the
        caller stores the object again. Otherwise the mark goes too. A writer whose mark
        comes after this read finds the object missing and stores it again itself. Three
        requests: ``DeleteObject``, ``HeadObject``, ``DeleteObject``.
        """
        self._s3.call("delete_object", self.key(oid), Key=self.key(oid))
        mark = self._head(self._reuse_key(oid))
        if mark is not None and mark["LastModified"].timestamp() > since:
            return False
        self._s3.call("delete_object", self._reuse_key(oid), Key=self._reuse_key(oid))
        return True


_CREATE = "If-None-Match: * on PutObject"
_REPLACE = "If-Match on PutObject"
_DELETE = "If-Match on DeleteObject"
_SWAP_NEEDS = (_CREATE, _REPLACE)
_DELETE_NEEDS = (_DELETE,)

_SAMPLE_MAX = 64 << 10
"""The largest object the probe may send again (commits and leaves are far smaller)."""

_VERDICTS: dict[tuple[str, str], dict[str, bool]] = {}
_VERDICTS_LOCK = threading.Lock()


def check_conditional_writes(bucket: _Bucket, needed: tuple[str, ...]) -> None:
    """Refuse an endpoint that does not honour the conditions ``needed``; probe once.

    Each condition is tried the first time a request of this process relies on it, and
    what the endpoint did is kept per endpoint and bucket for the life of the process, so
    a server that knows conditional puts but not conditional deletes serves every ref
    operation but :meth:`S3Refs.delete_if`. The puts are tried on an object this client
    has just created (every change creates its commit before it moves a ref): sent again
    with ``If-None-Match: *``, and with ``If-Match`` on a wrong ETag, each must be refused;
    an endpoint that obeys neither rewrites the same bytes, which harms nothing. Two
    requests. Without such an object, for a put that was let through (it is tried again
    there, to tell an endpoint that ignores it from an object removed meanwhile), and for
    the conditional delete, which must never be tried on an object that matters, a fresh
    key under ``PREFIX/probe/`` is created (that must work), tried and deleted.

    Args:
        bucket: The bucket, through its endpoint.
        needed: The conditions the caller's request relies on.

    Raises:
        UsageError: The endpoint let a write through that one of them should have stopped.
    """
    ident = (bucket.endpoint, bucket.location.bucket)
    with _VERDICTS_LOCK:
        known = _VERDICTS.setdefault(ident, {})
        untried = tuple(c for c in needed if c not in known)
        if untried:
            known.update(_probe(bucket, untried))
        failed = [c for c in needed if not known[c]]
    if failed:
        raise UsageError(
            f"the S3 endpoint {bucket.endpoint} does not implement conditional writes (it "
            f"did not honour {', '.join(failed)}); two writers could both win and one's "
            f"change be lost, so {bucket.location} cannot hold a modelreg store's refs "
            "(docs/s3.md says what an endpoint needs)")


_WRONG_ETAG = '"00000000000000000000000000000000"'
# What a server that does not implement a condition may answer instead of obeying it.
_UNSUPPORTED = frozenset({"NotImplemented", "InvalidArgument", "InvalidRequest", "501"})


def _refused(s3: _Bucket, operation: str, key: str, **params: Any) -> bool:
    """Send a request that a condition must stop; True if the endpoint refused it so."""
    answer = s3.call(operation, key, _CONDITION_FAILED | _UNSUPPORTED, Key=key, **params)
    return isinstance(answer, _Refused) and answer.code in _CONDITION_FAILED


# How each condition is tried: the request and the condition that must stop it.
_TRIES: dict[str, tuple[str, dict[str, str]]] = {
    _CREATE: ("put_object", {"IfNoneMatch": "*"}),
    _REPLACE: ("put_object", {"IfMatch": _WRONG_ETAG}),
    _DELETE: ("delete_object", {"IfMatch": _WRONG_ETAG}),
}


def _probe(s3: _Bucket, conditions: tuple[str, ...]) -> dict[str, bool]:
    """Try each of ``conditions``; return which the endpoint honoured."""
    honoured: dict[str, bool] = {}
    rest = list(conditions)
    if s3.sample is not None:
        key, body = s3.sample
        for condition in conditions:
            operation, header = _TRIES[condition]
            if operation == "put_object" and _refused(
                    s3, operation, key, Body=body, ChecksumSHA256=_checksum(body), **header):
                honoured[condition] = True
                rest.remove(condition)
        # A write let through is tried again on a key of its own: the sample may have
        # been removed meanwhile (`gc --grace 0` before the ref names it).
    if not rest:
        return honoured
    key = s3.location.key("probe", uuid.uuid4().hex)
    try:
        created = s3.call("put_object", key, _CONDITION_FAILED | _UNSUPPORTED, Key=key,
                          Body=b"1", IfNoneMatch="*")
        if isinstance(created, _Refused):  # not even a create: the rest cannot be tried
            return {**honoured, **dict.fromkeys(rest, False)}
        for condition in rest:
            operation, header = _TRIES[condition]
            payload = {"Body": b"2"} if operation == "put_object" else {}
            honoured[condition] = _refused(s3, operation, key, **payload, **header)
    finally:
        with contextlib.suppress(ModelregError):  # a probe key left over is harmless
            s3.call("delete_object", key, Key=key)
    return honoured


class S3Refs:
    """Refs under ``PREFIX/refs/`` in a bucket: small bodies, ETags as tokens."""

    queues = False
    """No lock: writers race and the conditional write decides."""

    def __init__(self, bucket: _Bucket) -> None:
        self._s3 = bucket

    def key(self, name: str) -> str:
        """Return the key of ref ``name``.

        Raises:
            ValueError: The name is malformed (see :func:`modelreg.storage.refs.check_ref_name`).
        """
        check_ref_name(name)
        return self._s3.location.key("refs", name)

    def where(self, name: str) -> str:
        """How messages name a ref of this store (its ``s3://`` URL)."""
        return self._s3.location.url("refs", name)

    def locked(self, name: str) -> contextlib.AbstractContextManager[None]:
        """No lock: writers of S3 race, and the conditional write decides."""
        return contextlib.nullcontext()

    def read(self, name: str) -> bytes | None:
        """Return the body ref ``name`` holds, or None if it does not exist."""
        return self.read_versioned(name)[0]

    def read_versioned(self, name: str) -> tuple[bytes | None, str | None]:
        """Return the ref's body and ETag (one ``GetObject``); (None, None) if absent.

        Raises:
            IntegrityError: The ref is larger than :data:`MAX_REF_BODY`.
        """
        key = self.key(name)
        answer = self._s3.call("get_object", key, frozenset({"NoSuchKey"}), Key=key)
        if isinstance(answer, _Refused):
            return None, None
        body = answer["Body"]
        if int(answer.get("ContentLength", 0)) > MAX_REF_BODY:
            body.close()
            raise IntegrityError(
                f"ref {name} is larger than {MAX_REF_BODY} bytes: not a ref modelreg wrote "
                f"({self.where(name)})", self.where(name))
        data = self._s3.read_body(body, key)
        return data, str(answer["ETag"])

    def compare_and_swap(self, name: str, expected: str | None, body: bytes) -> bool:
        """Write ``body`` to ref ``name`` if its token is still ``expected``.

        ``expected=None`` creates the ref only if it does not exist (``If-None-Match: *``);
        otherwise it is replaced only if its ETag is still ``expected`` (``If-Match``). One
        ``PutObject``; the first write of a process to a bucket probes it first
        (:func:`check_conditional_writes`).

        Returns:
            False, changing nothing, if the ref exists (create), moved or was deleted.

        Raises:
            ValueError: ``body`` is larger than :data:`MAX_REF_BODY`.
        """
        if not isinstance(body, bytes) or len(body) > MAX_REF_BODY:
            raise ValueError(f"a ref body is bytes, at most {MAX_REF_BODY} of them")
        key = self.key(name)
        check_conditional_writes(self._s3, _SWAP_NEEDS)
        condition = {"IfNoneMatch": "*"} if expected is None else {"IfMatch": expected}
        answer = self._s3.call("put_object", key, _CONDITION_FAILED | _NO_KEY, Key=key,
                               Body=body, ChecksumSHA256=_checksum(body), **condition)
        if not isinstance(answer, _Refused):
            return True
        # Refused, perhaps by our own earlier attempt whose answer was lost (module docstring).
        return answer.retried and self.read(name) == body

    def delete_if(self, name: str, expected: str | None) -> bool:
        """Delete ref ``name`` if its token is still ``expected`` (``If-Match``).

        Returns:
            False, changing nothing, if the ref moved or does not exist (always False for
            ``expected=None``: there is no token of an absent ref to match).
        """
        key = self.key(name)
        if expected is None:
            return False
        check_conditional_writes(self._s3, _DELETE_NEEDS)
        answer = self._s3.call("delete_object", key, _CONDITION_FAILED | _NO_KEY, Key=key,
                               IfMatch=expected)
        if not isinstance(answer, _Refused):
            return True
        return answer.retried and self.read(name) is None

    def names(self, prefix: str) -> Iterator[str]:
        """Yield the names of the refs directly under ``prefix``, sorted (``ListObjectsV2``)."""
        prefix = prefix.rstrip("/")
        check_ref_name(prefix)
        below = self._s3.location.key("refs", prefix, "")
        return (f"{prefix}/{rest}" for rest in self._s3.list(below, delimiter="/"))


_LOADER: list[Any] = []
_LOADER_LOCK = threading.Lock()


def open_s3(url: str, *, max_attempts: int = MAX_ATTEMPTS,
            multipart_threshold: int = MULTIPART_THRESHOLD,
            part_size: int = PART_SIZE) -> tuple[S3Objects, S3Refs]:
    """Open the store at ``url`` (``s3://BUCKET/PREFIX``): its objects and its refs.

    No request is made yet; the first one finds out whether the bucket exists and the
    credentials work. Credentials, region and endpoint come from the standard AWS chain.

    Args:
        url: The store's URL.
        max_attempts: Attempts per request (botocore's ``standard`` retry mode).
        multipart_threshold: Files larger than this are uploaded in parts.
        part_size: The size of each part.

    Returns:
        The objects and refs of the store, sharing one client.

    Raises:
        UsageError: The URL is malformed, boto3 is not installed, or the AWS configuration
            names an unusable endpoint or a profile that does not exist.
    """
    location = S3Location.parse(url)
    try:
        import boto3
        import botocore.exceptions
        import botocore.loaders
        import botocore.session
        from botocore.config import Config
    except ImportError as exc:
        raise UsageError("s3:// stores need boto3: pip install 'modelreg[s3]'") from exc
    config = Config(retries={"mode": "standard", "total_max_attempts": max_attempts},
                    connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT)
    # A new session reads the environment and profiles afresh; the loader it shares keeps
    # botocore's parsed S3 model, which is most of the cost of making a client (~0.1 s).
    with _LOADER_LOCK:
        if not _LOADER:
            _LOADER.append(botocore.loaders.create_loader())
    session = botocore.session.get_session()
    session.register_component("data_loader", _LOADER[0])
    try:
        client = boto3.session.Session(botocore_session=session).client("s3", config=config)
    except (ValueError, botocore.exceptions.BotoCoreError) as exc:  # a bad endpoint, profile
        raise UsageError(f"cannot open {location}: {exc} (check AWS_ENDPOINT_URL, "
                         "AWS_PROFILE and the AWS config files)") from exc
    bucket = _Bucket(client, location, max_attempts)
    return (S3Objects(bucket, multipart_threshold=multipart_threshold, part_size=part_size),
            S3Refs(bucket))
