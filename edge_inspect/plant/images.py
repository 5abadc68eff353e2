"""The collector's image store, content-addressed: an image is named by the SHA-256 of its bytes, so
the same image fetched twice is stored once (docs/fleet.md).

``--images`` takes a folder (``/srv/fleet/images``, files ``ab/cd/<sha256>.jpg``) or an
S3-compatible URL ``s3://bucket/prefix`` (boto3, installed separately; endpoint and credentials
from the usual AWS_* environment variables, AWS_ENDPOINT_URL for MinIO, Ceph and the like).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from ..errors import UserError


class ImageStore:
    def put(self, data: bytes) -> str:
        """Store ``data``; returns its sha256 (hex)."""
        raise NotImplementedError

    def get(self, sha256: str) -> bytes | None:
        raise NotImplementedError


def _sha_ok(sha256: str) -> bool:
    return len(sha256) == 64 and all(c in "0123456789abcdef" for c in sha256)


class FolderImageStore(ImageStore):
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256[2:4] / f"{sha256}.jpg"

    def put(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        path = self.path(sha)
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        return sha

    def get(self, sha256: str) -> bytes | None:
        if not _sha_ok(sha256):
            return None
        path = self.path(sha256)
        return path.read_bytes() if path.is_file() else None


class S3ImageStore(ImageStore):
    def __init__(self, url: str):
        try:
            import boto3  # optional: only for s3:// image stores
        except ImportError:
            raise UserError("--images s3://…: install boto3 (pip install boto3) for S3-compatible storage") from None
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        if not bucket:
            raise UserError(f"--images {url!r}: expected s3://BUCKET[/PREFIX]")
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.s3 = boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None)

    def _key(self, sha256: str) -> str:
        return "/".join(p for p in (self.prefix, sha256[:2], f"{sha256}.jpg") if p)

    def put(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        self.s3.put_object(Bucket=self.bucket, Key=self._key(sha), Body=data, ContentType="image/jpeg")
        return sha

    def get(self, sha256: str) -> bytes | None:
        if not _sha_ok(sha256):
            return None
        try:
            return self.s3.get_object(Bucket=self.bucket, Key=self._key(sha256))["Body"].read()
        except Exception:
            return None


def open_store(where: str) -> ImageStore:
    return S3ImageStore(where) if where.startswith("s3://") else FolderImageStore(where)


class FetchError(Exception):
    def __init__(self, message: str, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent  # 404: the station kept no such image any more; do not retry


def origin(url: str) -> str | None:
    """scheme://host:port of an http(s) URL (the port written out), or None for any other URL."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        return None
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host.lower()}:{port}"


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A station's image API never redirects: a redirect (anywhere) is refused, so no fetch and no token
    leaves the station's pinned origin."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        raise urllib.error.HTTPError(req.full_url, code, f"redirect to {newurl} refused", headers, fp)


_OPENER = urllib.request.build_opener(_NoRedirects)


def fetch(url: str, token: str | None, pinned: str, timeout: float = 10.0, max_bytes: int = 50 << 20) -> bytes:
    """GET an image from a station's API with its token (Authorization: Bearer) — only from ``pinned``,
    the station's origin in the collector's config (http/https; no redirects; size and time limits)."""
    if origin(url) is None or origin(url) != origin(pinned):
        raise FetchError(f"{url}: not the station's pinned origin {pinned}", permanent=True)
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            announced = response.headers.get("Content-Length")
            data = response.read(max_bytes + 1)
    except urllib.error.HTTPError as err:
        raise FetchError(
            f"{url}: HTTP {err.code} {err.msg}", permanent=err.code in (404, 410) or 300 <= err.code < 400
        ) from None
    except (urllib.error.URLError, OSError, TimeoutError, http.client.HTTPException) as err:
        raise FetchError(f"{url}: {getattr(err, 'reason', err)}") from None
    if len(data) > max_bytes:
        raise FetchError(f"{url}: larger than {max_bytes >> 20} MB", permanent=True)
    # read(n) returns what came before the connection closed: a station stopped mid-answer gives a
    # short (or empty) body, which is retried, never stored as the image.
    if not data or (announced is not None and announced.isdigit() and len(data) != int(announced)):
        raise FetchError(f"{url}: the answer ended after {len(data)} of {announced or 'unknown'} bytes")
    return data
