"""OAuth token cache: 0600 and atomic, refreshed silently, consent asked only when needed, never printed."""

import json
import os
import stat
from datetime import datetime, timedelta

import google_auth_httplib2
import pytest
from google.oauth2.credentials import Credentials
from googleapiclient.http import HttpMockSequence

from workflows import auth

READ, LABEL, DRIVE = auth.SCOPES["gmail_read"], auth.SCOPES["gmail_label"], auth.SCOPES["drive_file"]
SECRET = "ya29.SECRET-ACCESS-TOKEN"
REFRESH = "1//SECRET-REFRESH-TOKEN"


def credentials(scopes=(READ, DRIVE), token=SECRET, expired=False) -> Credentials:
    expiry = datetime.utcnow() + (timedelta(hours=-1) if expired else timedelta(hours=1))
    return Credentials(
        token=token,
        refresh_token=REFRESH,
        token_uri="https://oauth2.googleapis.com/token",
        client_id="client.apps.googleusercontent.com",
        client_secret="client-secret",
        scopes=list(scopes),
        expiry=expiry,
    )


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def no_flow(*args):
    raise AssertionError("consent flow must not run")


class Flow:
    """Stands in for Google's consent page: records what was asked, returns fresh credentials."""

    def __init__(self, granted=None):
        self.calls = []
        self.granted = granted

    def __call__(self, client_secrets, scopes, open_browser):
        self.calls.append((client_secrets, scopes, open_browser))
        creds = credentials(scopes, token="ya29.FROM-CONSENT")
        if self.granted is not None:
            creds._granted_scopes = self.granted
        return creds


@pytest.fixture
def client_secrets(tmp_path):
    path = tmp_path / "client_secret.json"
    path.write_text(json.dumps({"installed": {"client_id": "x", "client_secret": "y"}}))
    return path


def test_scopes_are_minimal():
    assert auth.scopes_for() == [READ, DRIVE]
    assert auth.scopes_for(label=True) == [READ, LABEL, DRIVE]
    assert auth.scopes_for(read_gmail=True, upload=False) == [READ]
    assert auth.scopes_for(read_gmail=False, upload=True) == [DRIVE]


def test_token_file_is_0600_even_with_a_permissive_umask(tmp_path):
    previous = os.umask(0)
    try:
        path = auth.save_token(credentials(), tmp_path / "cfg" / "token.json")
    finally:
        os.umask(previous)
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700  # a new config folder is private too
    assert json.loads(path.read_text())["refresh_token"] == REFRESH
    assert [p.name for p in path.parent.iterdir()] == ["token.json"]  # no temporary file left behind


def test_overwriting_a_world_readable_token_makes_it_0600(tmp_path):
    path = tmp_path / "token.json"
    path.write_text("{}")
    path.chmod(0o644)
    auth.save_token(credentials(), path)
    assert mode(path) == 0o600


def test_loading_a_world_readable_token_restricts_it(tmp_path, capsys):
    path = tmp_path / "token.json"
    path.write_text(credentials().to_json())
    path.chmod(0o644)
    assert auth.load_token(path).token == SECRET
    assert mode(path) == 0o600
    assert SECRET not in capsys.readouterr().err


def test_a_valid_cached_token_is_used_without_consent(tmp_path):
    path = auth.save_token(credentials(), tmp_path / "token.json")
    creds = auth.get_credentials([READ, DRIVE], token_path=path, client_secrets=tmp_path / "absent.json", flow=no_flow)
    assert creds.token == SECRET and creds.valid


def test_an_expired_token_is_refreshed_saved_and_never_printed(tmp_path, capsys):
    path = auth.save_token(credentials(expired=True), tmp_path / "token.json")
    token_endpoint = HttpMockSequence(
        [
            (
                {"status": "200"},
                json.dumps({"access_token": "ya29.REFRESHED", "expires_in": 3600, "scope": f"{READ} {DRIVE}"}),
            )
        ]
    )
    creds = auth.get_credentials(
        [READ, DRIVE], token_path=path, flow=no_flow, request=google_auth_httplib2.Request(token_endpoint)
    )
    assert creds.token == "ya29.REFRESHED"
    uri, method, body, _ = token_endpoint.request_sequence[0]
    assert (uri, method) == ("https://oauth2.googleapis.com/token", "POST") and b"grant_type=refresh_token" in body
    assert json.loads(path.read_text())["token"] == "ya29.REFRESHED"
    assert mode(path) == 0o600
    out = capsys.readouterr()
    for secret in (SECRET, REFRESH, "ya29.REFRESHED", "client-secret"):
        assert secret not in out.out + out.err


def test_a_revoked_refresh_token_falls_back_to_consent(tmp_path, client_secrets):
    path = auth.save_token(credentials(expired=True), tmp_path / "token.json")
    token_endpoint = HttpMockSequence(
        [({"status": "400"}, json.dumps({"error": "invalid_grant", "error_description": "Token has been revoked."}))]
    )
    flow = Flow()
    creds = auth.get_credentials(
        [READ, DRIVE],
        token_path=path,
        client_secrets=client_secrets,
        flow=flow,
        request=google_auth_httplib2.Request(token_endpoint),
    )
    assert creds.token == "ya29.FROM-CONSENT" and len(flow.calls) == 1
    assert json.loads(path.read_text())["token"] == "ya29.FROM-CONSENT"


def test_a_token_without_the_label_scope_asks_for_consent_again(tmp_path, client_secrets, capsys):
    path = auth.save_token(credentials(scopes=[READ, DRIVE]), tmp_path / "token.json")
    flow = Flow()
    auth.get_credentials(
        [READ, LABEL, DRIVE], token_path=path, client_secrets=client_secrets, flow=flow, open_browser=False
    )
    assert flow.calls == [(client_secrets, [READ, LABEL, DRIVE], False)]
    assert json.loads(path.read_text())["scopes"] == [READ, LABEL, DRIVE]
    assert mode(path) == 0o600
    assert "lacks a scope" in capsys.readouterr().err


def test_first_run_without_a_client_file_says_what_to_do(tmp_path):
    with pytest.raises(auth.AuthError, match="Desktop app") as raised:
        auth.get_credentials([READ], token_path=tmp_path / "t.json", client_secrets=tmp_path / "nope.json")
    assert "nope.json" in str(raised.value) and "docs/workflow.md" in str(raised.value)
    assert not (tmp_path / "t.json").exists()


def test_consent_with_a_permission_unticked_is_refused(tmp_path, client_secrets):
    flow = Flow(granted=[READ])  # the user unticked Drive on the consent screen
    with pytest.raises(auth.AuthError, match="drive.file"):
        auth.get_credentials([READ, DRIVE], token_path=tmp_path / "t.json", client_secrets=client_secrets, flow=flow)
    assert not (tmp_path / "t.json").exists()


def test_an_unreadable_token_file_means_signing_in_again(tmp_path, client_secrets):
    path = tmp_path / "token.json"
    path.write_text("not json")
    path.chmod(0o600)
    flow = Flow()
    assert auth.get_credentials([READ], token_path=path, client_secrets=client_secrets, flow=flow).valid
    assert len(flow.calls) == 1


def test_clients_come_from_the_bundled_discovery_documents_with_a_timeout():
    gmail, drive = auth.build_services(credentials())
    assert gmail._baseUrl.startswith("https://gmail.googleapis.com/")
    assert drive._baseUrl == "https://www.googleapis.com/drive/v3/"
    assert gmail._http.credentials.token == SECRET
    assert gmail._http.http.timeout == auth.HTTP_TIMEOUT and drive._http.http is not gmail._http.http
    assert auth.build_services(credentials(), gmail=False)[0] is None
