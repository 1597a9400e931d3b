"""``s3://`` inputs for any run: the sample sheet, its FASTQ files and the reference are downloaded once into
``<work>/inputs/s3/`` (kept by URI and ETag, so a changed object is fetched again and an unchanged one never
is), and the run then reads the local copies. A sheet that names ``s3://`` files (or is itself in S3, with
paths relative to it) is rewritten with the local paths, line for line, so problems keep their line numbers.
"""

from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path
from typing import Any

from genobatch.storage import s3 as storage


class Localiser:
    def __init__(self, work: Path, endpoint_url: str | None) -> None:
        self.root = work / "inputs" / "s3"
        self.endpoint_url = endpoint_url
        self._client: Any = None

    @property
    def s3(self) -> Any:
        if self._client is None:
            self._client = storage.client(self.endpoint_url)
        return self._client

    def fetch(self, uri: str) -> Path:
        """The object's local copy, downloaded unless this version (ETag) is already here."""
        bucket, key = storage.split(uri)
        etag = self.s3.head_object(Bucket=bucket, Key=key)["ETag"].strip('"')
        folder = hashlib.sha256(f"{uri}\0{etag}".encode()).hexdigest()[:20]
        path = self.root / folder / Path(key).name
        if not path.is_file():
            storage.download(self.s3, uri, path)
        return path

    def fasta(self, location: str | Path) -> Path:
        return self.fetch(str(location)) if storage.is_s3(location) else Path(location)

    def sheet(self, location: str | Path) -> Path:
        remote_sheet = storage.is_s3(location)
        local = self.fetch(str(location)) if remote_sheet else Path(location)
        try:
            text = local.read_text()
        except (OSError, UnicodeDecodeError):
            return local  # the sample sheet checks report it
        try:
            rows = list(csv.reader(io.StringIO(text)))
        except csv.Error:
            return local  # the sample sheet checks report it, with its line
        base = str(location).rsplit("/", 1)[0] + "/" if remote_sheet else None
        changed = False
        for row in rows[1:]:
            for i in (1, 2):
                if i < len(row) and row[i].strip():
                    value = row[i].strip()
                    if not storage.is_s3(value) and base is not None and not value.startswith("/"):
                        value = base + value
                    if storage.is_s3(value):
                        row[i] = str(self.fetch(value))
                        changed = True
        if not changed:
            return local
        rewritten = local.with_name(f"{local.stem}.local.csv")
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(rows)
        rewritten.write_text(buffer.getvalue())
        return rewritten
