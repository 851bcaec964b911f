"""Runs the Python original, `gs-aws-to-gcp-workload-identity` (unchanged, as
installed from PyPI), against the emulator: one `AwsToGcpTokenService(...)
.get_oauth_token()` in a fresh process.

usage: original_wrapper.py EMULATOR_URL PROVIDER SERVICE_ACCOUNT

The package hard-codes its endpoints, so this wrapper rewrites URLs and
nothing else:
  * Google: `requests.post` to https://sts.googleapis.com and
    https://iamcredentials.googleapis.com goes to the emulator's
    /google/sts and /google/iamcredentials instead.
  * Google STS body: the package posts the JSON (camelCase) encoding of the
    token exchange, which Google's STS and the emulator both accept as is.
  * AWS: the package signs GetCallerIdentity for the global host
    sts.amazonaws.com; the emulator (like Google's current configs) accepts
    only regional STS URLs, so the host it signs and serializes is rewritten to
    sts.<region>.amazonaws.com. boto3 itself finds credentials through its
    default chain (here: environment variables) and, for AssumeRole, the
    endpoint in AWS_ENDPOINT_URL_STS.
Signing (botocore SigV4Auth), serialization and every HTTP call are the
package's own. Prints the first characters of the token; exits 1 on failure.
With BENCH_TIMINGS set, appends one JSON line to that file: how long the
imports, the constructor (which builds a boto3 STS client) and
get_oauth_token() took inside the process.
"""
import time

T0 = time.perf_counter()

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

import requests  # noqa: E402

from gs_aws_to_gcp_workload_identity import main as original  # noqa: E402

T1 = time.perf_counter()

EMULATOR, PROVIDER, SERVICE_ACCOUNT = sys.argv[1], sys.argv[2], sys.argv[3]
REGION = os.environ.get("AWS_REGION", "us-east-1")
GLOBAL_HOST = "sts.amazonaws.com"
REGIONAL_HOST = f"sts.{REGION}.amazonaws.com"
GOOGLE = {
    "https://sts.googleapis.com/": f"{EMULATOR}/google/sts/",
    "https://iamcredentials.googleapis.com/": f"{EMULATOR}/google/iamcredentials/",
}

_post = requests.post


def post(url, *args, **kwargs):
    for prefix, target in GOOGLE.items():
        if url.startswith(prefix):
            url = target + url[len(prefix):]
            break
    else:
        raise RuntimeError(f"unexpected URL {url}: refusing to leave loopback")
    return _post(url, *args, **kwargs)


requests.post = post  # gcp_util calls requests.post through the module


class Service(original.AwsToGcpTokenService):
    """The package's class with the AWS host rewritten; no method logic changed."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.sts_url = self.sts_url.replace(GLOBAL_HOST, REGIONAL_HOST)

    def _sign_aws_request(self, data=None, params=None, headers=None, credentials=None):
        if headers and headers.get("host") == GLOBAL_HOST:
            headers = dict(headers, host=REGIONAL_HOST)
        return super()._sign_aws_request(data, params, headers, credentials)

    def _generate_aws_caller_identity_token(self, authorization_header, credentials):
        token = super()._generate_aws_caller_identity_token(authorization_header, credentials)
        token["url"] = token["url"].replace(GLOBAL_HOST, REGIONAL_HOST)
        for h in token["headers"]:
            if h["key"] == "host":
                h["value"] = REGIONAL_HOST
        return token


def main() -> int:
    try:
        svc = Service(
            gcp_workload_provider_path=PROVIDER,
            gcp_service_account_email=SERVICE_ACCOUNT,
            aws_region=REGION,
        )
        t2 = time.perf_counter()
        token, _expires = svc.get_oauth_token()
        t3 = time.perf_counter()
    except Exception as e:  # noqa: BLE001 - report and fail
        sys.stderr.write(f"original failed: {type(e).__name__}: {e}\n")
        return 1
    if not token:
        sys.stderr.write("original returned no token\n")
        return 1
    sys.stdout.write(token[:16] + "\n")
    if os.environ.get("BENCH_TIMINGS"):
        with open(os.environ["BENCH_TIMINGS"], "a") as f:
            f.write(json.dumps({"imports": (T1 - T0) * 1e3, "constructor": (t2 - T1) * 1e3,
                                "get_oauth_token()": (t3 - t2) * 1e3}) + "\n")
    return 0


sys.exit(main())
