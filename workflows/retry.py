"""Retrying Google API calls with exponential backoff on rate limits (429) and server errors (5xx).

Our own loop rather than googleapiclient's `num_retries`, for two reasons: an upload attempt must
look for the file again before re-creating it (a 5xx can arrive after Drive stored the file), and a
run must record *why* it gave up in words a person can act on.
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import httplib2
from googleapiclient.errors import HttpError

T = TypeVar("T")

RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
RATE_LIMIT_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})
"""A 403 with one of these reasons is a rate limit too (Drive and Gmail still send them)."""
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    TimeoutError,
    ConnectionError,
    httplib2.ServerNotFoundError,
)


@dataclass
class RetryPolicy:
    """How hard to try: `attempts` tries in all, waiting base * 2**n seconds (capped) between them."""

    attempts: int = 6
    base_delay: float = 1.0
    max_delay: float = 32.0
    jitter: bool = True
    """Wait a random 50-100% of the delay, so parallel clients don't retry in lockstep."""
    sleep: Callable[[float], None] = field(default=lambda seconds: time.sleep(seconds), repr=False)

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number `retry` (1-based)."""
        delay = min(self.max_delay, self.base_delay * 2 ** (retry - 1))
        return delay * (0.5 + random.random() / 2) if self.jitter else delay


class GaveUpError(RuntimeError):
    """A call still failed after every attempt (or failed in a way that retrying can't fix)."""

    def __init__(self, what: str, attempts: int, cause: BaseException):
        self.what, self.attempts, self.cause = what, attempts, cause
        tries = f"after {attempts} attempt{'s' if attempts != 1 else ''}"
        super().__init__(f"{what} failed {tries}: {describe_error(cause)}")


def http_status(error: BaseException) -> int | None:
    return int(error.resp.status) if isinstance(error, HttpError) else None


def _reasons(error: HttpError) -> set[str]:
    try:
        body = json.loads(error.content.decode("utf-8", "replace"))
    except (ValueError, AttributeError):
        return set()
    details = body.get("error", {}) if isinstance(body, dict) else {}
    errors = details.get("errors", []) if isinstance(details, dict) else []
    return {e.get("reason", "") for e in errors if isinstance(e, dict)}


def is_retryable(error: BaseException) -> bool:
    if isinstance(error, TRANSIENT_ERRORS):
        return True
    status = http_status(error)
    if status is None:
        return False
    return status in RETRYABLE_STATUSES or (status == 403 and bool(_reasons(error) & RATE_LIMIT_REASONS))


def describe_error(error: BaseException) -> str:
    """One readable line: 'HTTP 500 (backendError): Backend Error' rather than a repr."""
    status = http_status(error)
    if isinstance(error, GaveUpError):
        return str(error)
    if status is None:
        return f"{type(error).__name__}: {error}"
    reason = error._get_reason() if hasattr(error, "_get_reason") else ""  # noqa: SLF001 - the library's own parser
    reasons = ", ".join(sorted(r for r in _reasons(error) if r))
    return f"HTTP {status}" + (f" ({reasons})" if reasons else "") + (f": {reason}" if reason else "")


def call_with_retries(what: str, call: Callable[[], T], policy: RetryPolicy | None = None) -> T:
    """Run `call`; on a retryable error wait and run it again, up to `policy.attempts` times in all.

    Raises `GaveUpError` (with the last error as its cause) when the attempts run out or the error
    is one that retrying cannot fix (404, 400, 401, a 403 that is not a rate limit).
    """
    policy = policy or RetryPolicy()
    for attempt in range(1, policy.attempts + 1):
        try:
            return call()
        except Exception as error:
            if not is_retryable(error):
                raise GaveUpError(what, attempt, error) from error
            if attempt == policy.attempts:
                raise GaveUpError(what, attempt, error) from error
            wait = policy.delay(attempt)
            print(f"  {what}: {describe_error(error)}; retrying in {wait:.1f}s", file=sys.stderr)
            policy.sleep(wait)
    raise AssertionError("unreachable")  # the loop returns or raises
