"""Metadata values beyond ASCII, sent by boto3 with either signature version, in a header
and in a presigned URL's query: one line per check, "ok <name>".

botocore refuses such Metadata before sending (validate_ascii_metadata, as S3 once
documented ASCII only); with that check taken out it sends the value's UTF-8 bytes and
signs them as sent, which S3 takes. Each value must come back RFC 2047-encoded, as S3
documents it ("encoded as per RFC 2047 to make them mail-safe before returning"): what
botocore gives as Metadata, which email.header decodes to the value sent.

python3 tests/clients/boto3_utf8_check.py <endpoint> <access key> <secret key> <bucket>
"""
import base64
import http.client
import sys
from email.header import decode_header, make_header
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.handlers import validate_ascii_metadata

endpoint, access, secret, bucket = sys.argv[1:5]
VALUE = "café ☕"
BYTES = VALUE.encode()
ENCODED = "=?UTF-8?B?" + base64.b64encode(BYTES).decode() + "?="


def client(signature_version):
    config = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                    signature_version=signature_version)
    c = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=access,
                     aws_secret_access_key=secret, region_name="us-east-1", config=config)
    c.meta.events.unregister("before-parameter-build.s3.PutObject", validate_ascii_metadata)
    return c


v2 = client("s3")
v4 = client("s3v4")


def ok(name, got, want):
    if got != want:
        raise SystemExit(f"FAILED {name}:\n got  {got!r}\n want {want!r}")
    print(f"ok {name}", flush=True)


def put(c, key):
    """The status of a PutObject of `key` with the metadata, or its error's code."""
    try:
        res = c.put_object(Bucket=bucket, Key=key, Body=b"x", Metadata={"name": VALUE})
        return res["ResponseMetadata"]["HTTPStatusCode"]
    except c.exceptions.ClientError as e:
        return e.response["Error"]["Code"]


def send(url, headers=None):
    """The status of a PUT of "x" to `url` with `headers` and no other (urllib would add a
    Content-Type, which Version 2 signs)."""
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port)
    conn.request("PUT", f"{u.path}?{u.query}", body=b"x", headers=headers or {})
    res = conn.getresponse()
    res.read()
    conn.close()
    return res.status


def kept(key):
    """The name metadata as HeadObject answers it (its status when it fails), signed with
    Version 2 and with 4."""
    return [head(c, key) for c in (v2, v4)]


def head(c, key):
    try:
        res = c.head_object(Bucket=bucket, Key=key)
    except c.exceptions.ClientError as e:
        return e.response["ResponseMetadata"]["HTTPStatusCode"]
    return res["Metadata"]["name"]


v2.create_bucket(Bucket=bucket)
ok("a Version 2 put_object with UTF-8 metadata is kept and answered RFC 2047-encoded",
   [put(v2, "v2-header"), kept("v2-header")], [200, [ENCODED, ENCODED]])
ok("the metadata answered decodes to the value sent",
   str(make_header(decode_header(head(v4, "v2-header")))), VALUE)
url = v2.generate_presigned_url("put_object", ExpiresIn=60,
                                Params={"Bucket": bucket, "Key": "v2-query",
                                        "Metadata": {"name": VALUE}})
ok("a Version 2 presigned put_object with UTF-8 metadata in its query is kept so too",
   [send(url), kept("v2-query")], [200, [ENCODED, ENCODED]])
ok("a Version 4 put_object with UTF-8 metadata is kept so too",
   [put(v4, "v4-header"), kept("v4-header")], [200, [ENCODED, ENCODED]])
url = v4.generate_presigned_url("put_object", ExpiresIn=60,
                                Params={"Bucket": bucket, "Key": "v4-signed-header",
                                        "Metadata": {"name": VALUE}})
ok("a Version 4 presigned put_object sent with the UTF-8 header it signs is kept so too",
   [send(url, {"x-amz-meta-name": BYTES}), kept("v4-signed-header")], [200, [ENCODED, ENCODED]])
