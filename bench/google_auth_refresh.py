"""One google-auth refresh in a fresh process, as an application would do it.

usage: google_auth_refresh.py CONFIG

Loads an external_account credential config (native `aws1`, or the
executable-sourced config from `wif-helper generate-config`), adds the
cloud-platform scope after loading (with scopes at load time google-auth
looks the project up at the real Cloud Resource Manager) and refreshes once.
Prints the first characters of the token; exits 1 on any failure. With
BENCH_TIMINGS set, appends one JSON line to that file: how long the imports
and the refresh took inside the process (the rest of the wall time is the
interpreter starting and exiting).
"""
import time

T0 = time.perf_counter()

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

import google.auth  # noqa: E402
from google.auth.transport.requests import Request  # noqa: E402

T1 = time.perf_counter()

SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]


def main() -> int:
    try:
        creds, _ = google.auth.load_credentials_from_file(sys.argv[1])
        creds = creds.with_scopes(SCOPES)
        creds.refresh(Request())
        t2 = time.perf_counter()
    except Exception as e:  # noqa: BLE001 - report and fail
        sys.stderr.write(f"google-auth refresh failed: {type(e).__name__}: {e}\n")
        return 1
    if not creds.token:
        sys.stderr.write("google-auth refresh returned no token\n")
        return 1
    sys.stdout.write(creds.token[:16] + "\n")
    if os.environ.get("BENCH_TIMINGS"):
        with open(os.environ["BENCH_TIMINGS"], "a") as f:
            f.write(json.dumps({"imports": (T1 - T0) * 1e3, "load + refresh": (t2 - T1) * 1e3}) + "\n")
    return 0


sys.exit(main())
