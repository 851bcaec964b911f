"""Drives Python google-auth the way an application would, for tests/it/client_libraries.rs.

usage: python_client.py load|default CONFIG

Prints one JSON line: {"ok": true, "token": ..., "class": ...} or {"ok": false, "error": ...}.
"""
import json
import sys

import google.auth
from google.auth.transport.requests import Request

SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]


def main() -> None:
    mode, config = sys.argv[1], sys.argv[2]
    try:
        if mode == "load":
            # Scopes are added after loading, as google.auth.default() does: with
            # scopes at load time google-auth looks the project up at the real
            # Cloud Resource Manager, and tests must not leave loopback.
            creds, _ = google.auth.load_credentials_from_file(config)
            creds = creds.with_scopes(SCOPES)
        else:
            creds, _ = google.auth.default(scopes=SCOPES)
        creds.refresh(Request())
        print(json.dumps({
            "ok": True,
            "token": creds.token,
            "expiry": creds.expiry.isoformat() if creds.expiry else None,
            "class": f"{type(creds).__module__}.{type(creds).__name__}",
        }))
    except Exception as e:  # the test asserts on the message
        print(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"}))


main()
