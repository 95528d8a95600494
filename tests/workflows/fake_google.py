"""A stateful stand-in for Gmail v1 and Drive v3, at the HTTP layer where googleapiclient's own
`HttpMock` sits: the real generated clients (from the library's bundled discovery documents) build
and send real requests, and this object answers them like the services would.

Request-level tests use `googleapiclient.http.HttpMockSequence` directly; this fake exists for the
end-to-end runs, which need a Drive that remembers what was uploaded across crashes and reruns.
Its state lives in a JSON file, so uploads made by a killed child process are still there after.
"""

from __future__ import annotations

import base64
import json
import re
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httplib2

GMAIL = "/gmail/v1/users/me"
DRIVE = "/drive/v3/files"
UPLOAD = "/upload/drive/v3/files"
FOLDER_MIME = "application/vnd.google-apps.folder"

ROUTES = [
    # (method, path pattern, route name)
    ("GET", rf"^{GMAIL}/messages$", "gmail.list"),
    ("GET", rf"^{GMAIL}/messages/(?P<id>[^/]+)$", "gmail.get"),
    ("POST", rf"^{GMAIL}/messages/(?P<id>[^/]+)/modify$", "gmail.modify"),
    ("GET", rf"^{GMAIL}/labels$", "gmail.labels.list"),
    ("POST", rf"^{GMAIL}/labels$", "gmail.labels.create"),
    ("GET", rf"^{DRIVE}$", "drive.list"),
    ("GET", rf"^{DRIVE}/(?P<id>[^/]+)$", "drive.get"),
    ("POST", rf"^{DRIVE}$", "drive.create"),
    ("POST", rf"^{UPLOAD}$", "drive.upload"),
]


def _error(status: int, reason: str) -> bytes:
    return json.dumps({"error": {"code": status, "message": reason, "errors": [{"reason": reason}]}}).encode()


class FakeGoogle:
    """Gmail messages and a Drive with folders, persisted in `path` (JSON)."""

    def __init__(self, path: Path, messages: dict[str, bytes] | None = None, folders: tuple[str, ...] = ("folder-1",)):
        self.path = Path(path)
        if not self.path.exists():
            state = {"messages": {}, "labels": [], "files": {}, "next": 1, "failures": {}, "log": []}
            for n, (message_id, raw) in enumerate((messages or {}).items()):
                state["messages"][message_id] = {
                    "raw": base64.urlsafe_b64encode(raw).decode().rstrip("="),
                    "internalDate": str(1738000000000 + n * 1000),
                    "labelIds": ["INBOX"],
                }
            for folder in folders:
                state["files"][folder] = {"id": folder, "name": folder, "mimeType": FOLDER_MIME, "parents": []}
            self._save(state)

    # -- test helpers ---------------------------------------------------------------------------
    def _load(self) -> dict[str, Any]:
        return json.loads(self.path.read_text())

    def _save(self, state: dict[str, Any]) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(self.path)

    def fail_next(self, route: str, *statuses: int, commit: bool = False) -> None:
        """Answer the next requests to `route` with these statuses; `commit=True` performs the
        request first (a 5xx that arrives after the server did the work)."""
        state = self._load()
        state["failures"].setdefault(route, []).extend([status, commit] for status in statuses)
        self._save(state)

    def files(self, parent: str | None = None) -> list[dict[str, Any]]:
        files = [f for f in self._load()["files"].values() if f["mimeType"] != FOLDER_MIME]
        return [f for f in files if parent is None or parent in f["parents"]]

    def log(self) -> list[str]:
        """Route names of every request so far, in order."""
        return [entry[0] for entry in self._load()["log"]]

    def labels_of(self, message_id: str) -> list[str]:
        return self._load()["messages"][message_id]["labelIds"]

    # -- httplib2.Http's interface ----------------------------------------------------------------
    def request(self, uri, method="GET", body=None, headers=None, redirections=1, connection_type=None):
        parts = urlsplit(uri)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        found = [(name, m) for verb, pattern, name in ROUTES if verb == method and (m := re.match(pattern, parts.path))]
        if not found:
            return self._respond(404, _error(404, f"no route for {method} {parts.path}"))
        name, match = found[0]
        state = self._load()
        state["log"].append([name, uri])
        pending = state["failures"].get(name) or []
        if pending:
            status, commit = pending.pop(0)
            if commit:
                getattr(self, "_" + name.replace(".", "_"))(state, match, query, body, headers or {})
            self._save(state)
            return self._respond(status, _error(status, "rateLimitExceeded" if status == 429 else "backendError"))
        status, payload = getattr(self, "_" + name.replace(".", "_"))(state, match, query, body, headers or {})
        self._save(state)
        return self._respond(status, json.dumps(payload).encode())

    def close(self) -> None:
        return None

    @staticmethod
    def _respond(status: int, content: bytes):
        return httplib2.Response({"status": str(status), "content-type": "application/json"}), content

    # -- Gmail ------------------------------------------------------------------------------------
    def _gmail_list(self, state, match, query, body, headers):
        ordered = sorted(state["messages"], key=lambda i: -int(state["messages"][i]["internalDate"]))
        start, size = int(query.get("pageToken", 0)), int(query.get("maxResults", 100))
        page = {"messages": [{"id": i, "threadId": i} for i in ordered[start : start + size]]}
        if start + size < len(ordered):
            page["nextPageToken"] = str(start + size)
        return 200, page

    def _gmail_get(self, state, match, query, body, headers):
        message = state["messages"].get(match["id"])
        if message is None:
            return 404, {"error": {"code": 404, "message": "Requested entity was not found."}}
        return 200, {"id": match["id"], "threadId": match["id"], **message}

    def _gmail_modify(self, state, match, query, body, headers):
        message = state["messages"][match["id"]]
        for label in json.loads(body)["addLabelIds"]:
            if label not in message["labelIds"]:
                message["labelIds"].append(label)
        return 200, {"id": match["id"], "labelIds": message["labelIds"]}

    def _gmail_labels_list(self, state, match, query, body, headers):
        return 200, {"labels": state["labels"]}

    def _gmail_labels_create(self, state, match, query, body, headers):
        label = {**json.loads(body), "id": f"Label_{len(state['labels']) + 1}", "type": "user"}
        state["labels"].append(label)
        return 200, label

    # -- Drive ------------------------------------------------------------------------------------
    def _drive_get(self, state, match, query, body, headers):
        file = state["files"].get(match["id"])
        if file is None:
            return 404, {"error": {"code": 404, "message": f"File not found: {match['id']}."}}
        return 200, {k: v for k, v in file.items() if k != "content"} | {"trashed": False}

    def _drive_list(self, state, match, query, body, headers):
        q = query.get("q", "")
        conditions = []
        if m := re.search(r"appProperties has \{ key='([^']*)' and value='((?:[^'\\]|\\.)*)' \}", q):
            key, value = m[1], m[2].replace("\\'", "'")
            conditions.append(lambda f: f.get("appProperties", {}).get(key) == value)
        if m := re.search(r"'([^']*)' in parents", q):
            conditions.append(lambda f, parent=m[1]: parent in f.get("parents", []))
        if m := re.search(r"mimeType = '([^']*)'", q):
            conditions.append(lambda f, mime=m[1]: f["mimeType"] == mime)
        found = [f for f in state["files"].values() if all(c(f) for c in conditions)]
        return 200, {"files": [self._public(f) for f in found]}

    def _new_file(self, state, metadata: dict[str, Any], content: str | None) -> dict[str, Any]:
        file_id = f"file-{state['next']}"
        state["next"] += 1
        file = {"id": file_id, "parents": [], "mimeType": "application/octet-stream", **metadata}
        file["webViewLink"] = f"https://drive.google.com/file/d/{file_id}/view"
        if content is not None:
            file["content"] = content
        state["files"][file_id] = file
        return file

    def _drive_create(self, state, match, query, body, headers):
        return 200, self._public(self._new_file(state, json.loads(body), None))

    def _drive_upload(self, state, match, query, body, headers):
        assert query.get("uploadType") == "multipart", query
        raw = body if isinstance(body, bytes) else body.encode()
        envelope = f"Content-Type: {headers['content-type']}\r\n\r\n".encode() + raw
        metadata_part, media_part = BytesParser(policy=policy.compat32).parsebytes(envelope).get_payload()
        metadata = json.loads(metadata_part.get_payload())
        metadata.setdefault("mimeType", media_part.get_content_type())
        content = media_part.get_payload(decode=True).decode("utf-8")
        file = self._new_file(state, metadata, content)
        file["uploadedMimeType"] = media_part.get_content_type()
        return 200, self._public(file)

    @staticmethod
    def _public(file: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in file.items() if k != "content"}
