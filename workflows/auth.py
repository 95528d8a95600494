"""Google sign-in for a command-line tool: the OAuth "installed app" flow and a cached token file.

The first run opens a browser for consent; the token (with its refresh token) is then kept in a
file only its owner can read (0600, written atomically), and later runs refresh it silently.
Tokens are never printed or logged: messages name the file, never its content.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from workflows.files import write_atomic

SCOPES = {
    "gmail_read": "https://www.googleapis.com/auth/gmail.readonly",
    "gmail_label": "https://www.googleapis.com/auth/gmail.modify",
    "drive_file": "https://www.googleapis.com/auth/drive.file",
}
"""The only scopes the workflow asks for. drive.file: files this app creates, nothing else in Drive."""

TOKEN_MODE = 0o600
HTTP_TIMEOUT = 120
"""Seconds a Google API request may stall before it is retried."""
CONFIG_DIR = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "news-enhancer"
DEFAULT_CLIENT_SECRETS = CONFIG_DIR / "client_secret.json"
DEFAULT_TOKEN = CONFIG_DIR / "google-token.json"
SETUP_DOC = "docs/workflow.md"


class AuthError(RuntimeError):
    """Sign-in can't proceed; the message says what the user has to do."""


def scopes_for(*, read_gmail: bool = True, label: bool = False, upload: bool = True) -> list[str]:
    """The scopes a run needs: Gmail read-only, Gmail modify only to label, Drive file to upload."""
    wanted = [("gmail_read", read_gmail), ("gmail_label", label), ("drive_file", upload)]
    return [SCOPES[name] for name, needed in wanted if needed]


def save_token(credentials: Any, path: str | Path) -> Path:
    """Write the credentials' JSON to `path`, readable by its owner only, atomically."""
    path = Path(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return write_atomic(path, credentials.to_json(), mode=TOKEN_MODE)


def load_token(path: str | Path) -> Any | None:
    """Cached credentials from `path`, or None when there are none (or the file is unreadable)."""
    from google.oauth2.credentials import Credentials

    path = Path(path)
    if not path.is_file():
        return None
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        print(f"auth: {path} was readable by others (mode {mode:o}); restricting it to 0600", file=sys.stderr)
        path.chmod(TOKEN_MODE)
    try:
        return Credentials.from_authorized_user_file(str(path))
    except (ValueError, KeyError, json.JSONDecodeError):
        print(f"auth: ignoring unreadable token file {path}; signing in again", file=sys.stderr)
        return None


def run_installed_app_flow(client_secrets: Path, scopes: Sequence[str], open_browser: bool = True) -> Any:
    """Consent in the browser; a local server on a free port receives Google's answer."""
    from google_auth_oauthlib.flow import InstalledAppFlow

    flow = InstalledAppFlow.from_client_secrets_file(str(client_secrets), scopes=list(scopes))
    return flow.run_local_server(
        port=0,
        open_browser=open_browser,
        authorization_prompt_message="auth: open this URL in a browser to allow access:\n{url}\n",
        success_message="news-enhancer is authorized; you can close this tab.",
    )


def _default_request() -> Any:
    from google.auth.transport.requests import Request

    return Request()


def get_credentials(
    scopes: Sequence[str],
    *,
    client_secrets: str | Path = DEFAULT_CLIENT_SECRETS,
    token_path: str | Path = DEFAULT_TOKEN,
    open_browser: bool = True,
    flow: Callable[[Path, Sequence[str], bool], Any] = run_installed_app_flow,
    request: Any = None,
) -> Any:
    """Valid credentials covering `scopes`: the cached token, refreshed if expired, else a new consent.

    `flow` and `request` (the HTTP transport for refreshing) are parameters so tests can stand in
    for Google's servers.
    """
    from google.auth.exceptions import RefreshError

    token_path = Path(token_path)
    credentials = load_token(token_path)
    if credentials is not None and credentials.has_scopes(scopes):
        if credentials.valid:
            return credentials
        if credentials.refresh_token:
            try:
                credentials.refresh(request or _default_request())
            except RefreshError as error:  # revoked or expired refresh token: ask again
                reason = error.args[0] if error.args else "refresh failed"
                print(f"auth: the cached token could not be refreshed ({reason}); signing in again", file=sys.stderr)
            else:
                save_token(credentials, token_path)
                return credentials
    elif credentials is not None:
        print("auth: the cached token lacks a scope this run needs; asking for consent again", file=sys.stderr)

    client_secrets = Path(client_secrets).expanduser()
    if not client_secrets.is_file():
        raise AuthError(
            f"No OAuth client file at {client_secrets}. Create an OAuth client of type 'Desktop app' in the "
            f"Google Cloud console, download its JSON there (or pass --credentials PATH); see {SETUP_DOC}."
        )
    credentials = flow(client_secrets, list(scopes), open_browser)
    granted = getattr(credentials, "granted_scopes", None) or scopes
    granted = set(granted.split() if isinstance(granted, str) else granted)
    missing = [s for s in scopes if s not in granted]
    if missing:
        raise AuthError(f"Access not granted for {', '.join(missing)}: run again and allow every requested permission.")
    save_token(credentials, token_path)
    print(f"auth: token saved to {token_path} (mode 0600)", file=sys.stderr)
    return credentials


def build_services(credentials: Any, *, gmail: bool = True, drive: bool = True) -> tuple[Any, Any]:
    """Gmail v1 and Drive v3 clients (None for the one not needed), from the bundled discovery documents.

    Each gets its own connection with a timeout: httplib2 waits forever by default, and a stalled
    connection must become a retryable error, not a hung run.
    """
    import google_auth_httplib2
    import httplib2
    from googleapiclient.discovery import build

    def make(api: str, version: str) -> Any:
        http = google_auth_httplib2.AuthorizedHttp(credentials, http=httplib2.Http(timeout=HTTP_TIMEOUT))
        return build(api, version, http=http, static_discovery=True, cache_discovery=False)

    return (make("gmail", "v1") if gmail else None, make("drive", "v3") if drive else None)
