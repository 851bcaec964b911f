"""Drives Python google-auth through Application Default Credentials against a
metadata server, for tests/it/metadata_clients.rs. No credential file: only the
environment wif-helper printed (GCE_METADATA_HOST and friends).

usage: python_mds_client.py AUDIENCE

Prints one JSON line: {"ok": true, "class", "project", "token", "id_token"} or
{"ok": false, "error"}.
"""
import json
import sys

import google.auth
import google.oauth2.id_token
from google.auth.transport.requests import Request

SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]


def main() -> None:
    audience = sys.argv[1]
    try:
        creds, project = google.auth.default(scopes=SCOPES)
        creds.refresh(Request())
        id_token = google.oauth2.id_token.fetch_id_token(Request(), audience)
        print(json.dumps({
            "ok": True,
            "class": f"{type(creds).__module__}.{type(creds).__name__}",
            "project": project,
            "token": creds.token,
            "id_token": id_token,
        }))
    except Exception as e:  # the test shows the message
        print(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"}))


main()
