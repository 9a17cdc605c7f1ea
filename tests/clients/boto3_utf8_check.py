"""Metadata values beyond ASCII, sent by boto3 with either signature version, in a header
and in a presigned URL's query: one line per check, "ok <name>".

botocore refuses such Metadata before sending (validate_ascii_metadata, as S3 once
documented ASCII only); with that check taken out it sends the value's UTF-8 bytes and
signs them as sent, which S3 takes. Each value must come back as the same bytes.

python3 tests/clients/boto3_utf8_check.py <endpoint> <access key> <secret key> <bucket>
"""
import http.client
import sys
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.handlers import validate_ascii_metadata

endpoint, access, secret, bucket = sys.argv[1:5]
VALUE = "café ☕"
BYTES = VALUE.encode()


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
    """x-amz-meta-name's bytes as HeadObject answers them (its status when it fails), signed
    with Version 2 and with 4 (http.client reads a header's bytes as Latin-1: encoding it so
    gives them back)."""
    return [head(c, key) for c in (v2, v4)]


def head(c, key):
    try:
        res = c.head_object(Bucket=bucket, Key=key)
    except c.exceptions.ClientError as e:
        return e.response["ResponseMetadata"]["HTTPStatusCode"]
    return res["ResponseMetadata"]["HTTPHeaders"]["x-amz-meta-name"].encode("latin-1")


v2.create_bucket(Bucket=bucket)
ok("a Version 2 put_object with UTF-8 metadata is stored as its bytes",
   [put(v2, "v2-header"), kept("v2-header")], [200, [BYTES, BYTES]])
url = v2.generate_presigned_url("put_object", ExpiresIn=60,
                                Params={"Bucket": bucket, "Key": "v2-query",
                                        "Metadata": {"name": VALUE}})
ok("a Version 2 presigned put_object with UTF-8 metadata in its query is stored as its bytes",
   [send(url), kept("v2-query")], [200, [BYTES, BYTES]])
ok("a Version 4 put_object with UTF-8 metadata is stored as its bytes",
   [put(v4, "v4-header"), kept("v4-header")], [200, [BYTES, BYTES]])
url = v4.generate_presigned_url("put_object", ExpiresIn=60,
                                Params={"Bucket": bucket, "Key": "v4-signed-header",
                                        "Metadata": {"name": VALUE}})
ok("a Version 4 presigned put_object sent with the UTF-8 header it signs is stored as its bytes",
   [send(url, {"x-amz-meta-name": BYTES}), kept("v4-signed-header")], [200, [BYTES, BYTES]])
