"""S3 staging: the few operations runs need, with checksums, retries and multipart for large files.

Used by the driver (upload inputs, publish outputs) and by the job runner inside the tool images (download
a task's inputs, upload its outputs). boto3 is imported lazily, so the runner works without it for local
tasks. Retries: botocore's standard mode (throttling, 5xx, connection errors), 10 attempts. Uploads send a
SHA-256 checksum that S3 verifies; files above 64 MiB go up in parts, several at a time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from genobatch.storage import DONE_MARKER as DONE_MARKER  # here too: its users import this module as storage

MULTIPART_BYTES = 64 * 1024 * 1024


def is_s3(location: str | os.PathLike[str]) -> bool:
    return str(location).startswith("s3://")


def split(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key)."""
    if not is_s3(uri):
        raise ValueError(f"not an s3:// URI: {uri}")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


def client(endpoint_url: str | None = None) -> Any:
    import boto3
    from botocore.config import Config

    factory: Any = boto3.client
    return factory(
        "s3",
        endpoint_url=endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None,
        config=Config(retries={"max_attempts": 10, "mode": "standard"}),
    )


def _transfer() -> Any:
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(multipart_threshold=MULTIPART_BYTES, multipart_chunksize=MULTIPART_BYTES, max_concurrency=4)


def exists(s3: Any, uri: str) -> bool:
    bucket, key = split(uri)
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except s3.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return True


def state(s3: Any, uri: str) -> str | None:
    """What changes whenever the object (or every object under the prefix) does: ETags; None when absent."""
    bucket, key = split(uri)
    try:
        tag: str = s3.head_object(Bucket=bucket, Key=key)["ETag"]
        return tag
    except s3.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
            raise
    tags = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key.rstrip("/") + "/"):
        tags += [f"{item['Key']}={item['ETag']}" for item in page.get("Contents", [])]
    return ";".join(tags) or None


def copy(s3: Any, source: str, target: str) -> None:
    """An object, or every object under a prefix, from one URI to another."""
    keys = [split(source)[1]] if exists(s3, source) else list_prefix(s3, source)
    source_bucket, source_key = split(source)
    bucket, target_key = split(target)
    for key in keys:
        s3.copy({"Bucket": source_bucket, "Key": key}, bucket, target_key + key[len(source_key) :])


def download(s3: Any, uri: str, path: Path) -> None:
    """One object to a file, written under a temporary name and renamed when complete."""
    bucket, key = split(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    s3.download_file(bucket, key, str(partial), Config=_transfer())
    partial.replace(path)


def list_prefix(s3: Any, uri: str) -> list[str]:
    """Keys under ``uri`` (a "directory": the prefix ends with /)."""
    bucket, prefix = split(uri.rstrip("/") + "/")
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [item["Key"] for item in page.get("Contents", [])]
    return keys


def download_dir(s3: Any, uri: str, directory: Path) -> None:
    bucket, prefix = split(uri.rstrip("/") + "/")
    for key in list_prefix(s3, uri):
        download(s3, f"s3://{bucket}/{key}", directory / key[len(prefix) :])


def upload(s3: Any, path: Path, uri: str) -> None:
    bucket, key = split(uri)
    s3.upload_file(str(path), bucket, key, ExtraArgs={"ChecksumAlgorithm": "SHA256"}, Config=_transfer())


def upload_dir(s3: Any, directory: Path, uri: str) -> None:
    """Every file under ``directory``; the done marker (if present) last, so a reader never sees a partial
    output as finished."""
    files = sorted(p for p in directory.rglob("*") if p.is_file())
    files.sort(key=lambda p: p.name == DONE_MARKER)
    for path in files:
        upload(s3, path, f"{uri.rstrip('/')}/{path.relative_to(directory).as_posix()}")


def delete_prefix(s3: Any, uri: str) -> None:
    bucket, _ = split(uri)
    keys = list_prefix(s3, uri)
    for start in range(0, len(keys), 1000):
        s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[start : start + 1000]]})
