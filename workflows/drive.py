"""Google Drive: upload a report into a folder exactly once, found again by a key we choose.

Every file we create carries `appProperties[KEY_PROPERTY] = key` (e.g. "gmail:<message id>").
Before creating a file we ask Drive for one with that key in the folder, so a run that crashed
after an upload but before writing its state, or an upload answered with a 5xx after Drive had
stored the file, never leaves a duplicate.

With the `drive.file` scope the app sees only files it created (or that were opened with it):
exactly the files it needs to find, and nothing else in the user's Drive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from googleapiclient.http import MediaInMemoryUpload

from workflows.retry import GaveUpError, RetryPolicy, call_with_retries, http_status

KEY_PROPERTY = "newsEnhancerKey"
FOLDER_MIME = "application/vnd.google-apps.folder"
GOOGLE_DOC_MIME = "application/vnd.google-apps.document"
MARKDOWN_MIME = "text/markdown"
FILE_FIELDS = "id, name, mimeType, webViewLink"


class FolderError(RuntimeError):
    """The target folder is missing, not a folder, or not visible to the app."""


@dataclass
class Report:
    """One file to upload: its Drive name, Markdown text and idempotency key."""

    name: str
    markdown: str
    key: str
    description: str = ""


@dataclass
class Uploaded:
    file_id: str
    link: str | None
    created: bool
    """False when Drive already had the file (an earlier, interrupted run uploaded it)."""


def _quote(value: str) -> str:
    """A string literal for a Drive search query."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _file_link(file: dict[str, Any]) -> str | None:
    return file.get("webViewLink") or (f"https://drive.google.com/file/d/{file['id']}/view" if "id" in file else None)


def check_folder(service: Any, folder_id: str, policy: RetryPolicy | None = None) -> dict[str, Any]:
    """The folder's metadata; a `FolderError` that says what to do when the app can't use it."""
    request = service.files().get(fileId=folder_id, fields="id, name, mimeType, trashed", supportsAllDrives=True)
    try:
        folder = call_with_retries(f"Drive files.get {folder_id}", request.execute, policy)
    except GaveUpError as error:
        if http_status(error.cause) == 404:
            raise FolderError(
                f"Drive folder {folder_id} not found or not visible to this app. With the drive.file scope the app "
                "can only use folders it created: run with --folder-name NAME to let it create (or reuse) its own "
                "folder, then pass the id it prints to --folder-id."
            ) from error
        raise
    if folder.get("mimeType") != FOLDER_MIME:
        raise FolderError(f"Drive file {folder_id} ({folder.get('name')!r}) is not a folder")
    if folder.get("trashed"):
        raise FolderError(f"Drive folder {folder_id} ({folder.get('name')!r}) is in the trash")
    return folder


def find_or_create_folder(service: Any, name: str, policy: RetryPolicy | None = None) -> str:
    """The id of the app's own folder called `name` in My Drive, created on first use."""
    key = f"folder:{name}"
    query = (
        f"appProperties has {{ key={_quote(KEY_PROPERTY)} and value={_quote(key)} }} "
        f"and mimeType = {_quote(FOLDER_MIME)} and trashed = false"
    )

    def attempt() -> str:
        found = service.files().list(q=query, fields="files(id, name)", pageSize=10, spaces="drive").execute()
        if found.get("files"):
            return found["files"][0]["id"]
        body = {"name": name, "mimeType": FOLDER_MIME, "appProperties": {KEY_PROPERTY: key}}
        return service.files().create(body=body, fields="id").execute()["id"]

    return call_with_retries(f"Drive folder {name!r}", attempt, policy)


def find_by_key(service: Any, folder_id: str, key: str) -> dict[str, Any] | None:
    """The file in `folder_id` that we uploaded under `key`, if any (one request, no retries)."""
    query = (
        f"appProperties has {{ key={_quote(KEY_PROPERTY)} and value={_quote(key)} }} "
        f"and {_quote(folder_id)} in parents and trashed = false"
    )
    request = service.files().list(
        q=query, fields=f"files({FILE_FIELDS})", pageSize=10, supportsAllDrives=True, includeItemsFromAllDrives=True
    )
    found = request.execute()
    files = found.get("files", [])
    return files[0] if files else None


def _create(service: Any, folder_id: str, report: Report, as_google_doc: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": report.name.removesuffix(".md") if as_google_doc else report.name,
        "parents": [folder_id],
        "appProperties": {KEY_PROPERTY: report.key},
        "description": report.description,
    }
    if as_google_doc:
        body["mimeType"] = GOOGLE_DOC_MIME  # Drive imports the Markdown into a Google Doc
    media = MediaInMemoryUpload(report.markdown.encode("utf-8"), mimetype=MARKDOWN_MIME, resumable=False)
    request = service.files().create(body=body, media_body=media, fields=FILE_FIELDS, supportsAllDrives=True)
    return request.execute()


def upload_once(
    service: Any, folder_id: str, report: Report, *, as_google_doc: bool = False, policy: RetryPolicy | None = None
) -> Uploaded:
    """Upload `report` into the folder unless a file with its key is already there.

    Each attempt looks before it creates, so retries after a 429/5xx cannot duplicate the file.
    Raises `GaveUpError` when Drive keeps failing.
    """

    tried_create = False  # a file found after our own failed create was created by this call

    def attempt() -> Uploaded:
        nonlocal tried_create
        existing = find_by_key(service, folder_id, report.key)
        if existing is not None:
            return Uploaded(existing["id"], _file_link(existing), created=tried_create)
        tried_create = True
        created = _create(service, folder_id, report, as_google_doc)
        return Uploaded(created["id"], _file_link(created), created=True)

    return call_with_retries(f"Drive upload {report.name!r}", attempt, policy)
