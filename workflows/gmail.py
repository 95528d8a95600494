"""Gmail: search messages (all pages), fetch one as raw RFC 822 bytes, label processed ones.

`service` is a Gmail v1 client from `googleapiclient.discovery.build("gmail", "v1", ...)`.
"""

from __future__ import annotations

import base64
from datetime import date
from typing import Any

from ingest.email import DecodedEmail, parse_email
from workflows.retry import RetryPolicy, call_with_retries

USER = "me"
PAGE_SIZE = 100
DEFAULT_LABEL = "news-enhancer/processed"


def search_query(query: str, since: date | None = None) -> str:
    """The Gmail search string: the user's query, narrowed to mail after `since` when given."""
    query = query.strip()
    if since is not None:
        query = f"{query} after:{since:%Y/%m/%d}".strip()
    return query


def list_message_ids(
    service: Any, query: str, policy: RetryPolicy | None = None, limit: int | None = None
) -> list[str]:
    """Ids of every message matching `query`, oldest first (Gmail lists newest first, page by page)."""
    ids: list[str] = []
    token: str | None = None
    while True:
        request = service.users().messages().list(userId=USER, q=query, maxResults=PAGE_SIZE, pageToken=token)
        page = call_with_retries("Gmail messages.list", request.execute, policy)
        ids += [m["id"] for m in page.get("messages", [])]
        token = page.get("nextPageToken")
        if not token or (limit is not None and len(ids) >= limit):
            break
    ids = list(dict.fromkeys(ids))  # a message can appear on two pages when mail arrives mid-listing
    if limit is not None:
        ids = ids[:limit]
    return ids[::-1]


def decode_raw(raw: str) -> bytes:
    """Gmail's `raw` field: base64url, padding sometimes stripped."""
    return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))


def message_link(message_id: str) -> str:
    return f"https://mail.google.com/mail/u/0/#all/{message_id}"


def fetch_email(service: Any, message_id: str, policy: RetryPolicy | None = None) -> DecodedEmail:
    """Fetch one message in raw form and decode it (see `ingest.email`)."""
    request = service.users().messages().get(userId=USER, id=message_id, format="raw")
    message = call_with_retries(f"Gmail messages.get {message_id}", request.execute, policy)
    arrived = message.get("internalDate")
    return parse_email(
        decode_raw(message["raw"]),
        message_id,
        link=message_link(message_id),
        arrived_ms=int(arrived) if arrived else None,
    )


def ensure_label(service: Any, name: str = DEFAULT_LABEL, policy: RetryPolicy | None = None) -> str:
    """The id of the user label `name`, created when it does not exist yet."""
    labels = call_with_retries("Gmail labels.list", service.users().labels().list(userId=USER).execute, policy)
    for label in labels.get("labels", []):
        if label.get("name") == name:
            return label["id"]
    body = {"name": name, "labelListVisibility": "labelShow", "messageListVisibility": "show"}
    created = call_with_retries(
        "Gmail labels.create", service.users().labels().create(userId=USER, body=body).execute, policy
    )
    return created["id"]


def add_label(service: Any, message_id: str, label_id: str, policy: RetryPolicy | None = None) -> None:
    """Add a label to a message (idempotent in Gmail: adding it twice changes nothing)."""
    request = service.users().messages().modify(userId=USER, id=message_id, body={"addLabelIds": [label_id]})
    call_with_retries(f"Gmail messages.modify {message_id}", request.execute, policy)
