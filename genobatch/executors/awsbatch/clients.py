"""boto3 clients for one region and (optionally) another endpoint, with retries on throttling and 5xx.

Credentials come from boto3's standard chain. ``--endpoint-url`` (or ``AWS_ENDPOINT_URL``, which boto3
reads itself) points every service at another endpoint, e.g. a moto server for tests.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config

# "adaptive" adds client-side rate limiting to "standard" retries (429/5xx with exponential backoff).
RETRY_CONFIG = Config(retries={"max_attempts": 10, "mode": "adaptive"})
DEFAULT_REGION = "us-east-1"


@dataclass
class Aws:
    region: str = ""
    endpoint_url: str | None = None
    _clients: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.region = (
            self.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
        )
        self.endpoint_url = self.endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None

    def client(self, service: str) -> Any:
        if service not in self._clients:
            factory: Any = boto3.client  # typed per service name by the stubs; ours is a plain str
            self._clients[service] = factory(
                service, region_name=self.region, endpoint_url=self.endpoint_url, config=RETRY_CONFIG
            )
        return self._clients[service]

    def account(self) -> str:
        account: str = self.client("sts").get_caller_identity()["Account"]
        return account
