"""boto3 against a running master with -s3-domain s3.test, virtual-hosted style: one line per
check, "ok <name>" or a traceback. <bucket>.s3.test resolves nowhere: each request goes to
127.0.0.1 with the Host it was signed for (a before-send hook), as a DNS wildcard would send it.

python3 tests/clients/boto3_virtual_check.py <port> <access key> <secret key> <bucket>
"""
import http.client
import sys
import urllib.parse

import boto3
from botocore.config import Config

port, access, secret, bucket = sys.argv[1:5]
seen = []


def to_loopback(request, **kwargs):
    u = urllib.parse.urlsplit(request.url)
    seen.append((u.netloc, u.path))
    request.headers["Host"] = u.netloc
    request.url = urllib.parse.urlunsplit(u._replace(netloc=f"127.0.0.1:{port}"))


def client(signature):
    s3 = boto3.client(
        "s3",
        endpoint_url=f"http://s3.test:{port}",
        aws_access_key_id=access,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(signature_version=signature, s3={"addressing_style": "virtual"},
                      retries={"max_attempts": 1}),
    )
    s3.meta.events.register("before-send", to_loopback)
    return s3


def fetch(url):
    """GET a presigned URL at 127.0.0.1, with the URL's host as Host: status and body."""
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection("127.0.0.1", int(port))
    conn.request("GET", f"{u.path}?{u.query}", headers={"Host": u.netloc})
    res = conn.getresponse()
    return res.status, res.read()


def ok(name, cond):
    if not cond:
        raise SystemExit(f"FAILED {name}")
    print(f"ok {name}", flush=True)


for signature, name in [("s3v4", "Signature Version 4"), ("s3", "Signature Version 2")]:
    s3 = client(signature)
    key = f"{signature}/dir one/c+d.txt"
    s3.put_object(Bucket=bucket, Key=key, Body=b"hello virtual")
    got = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=f"{signature}/")["Contents"]]
    s3.copy_object(Bucket=bucket, Key=f"{key}.copy", CopySource={"Bucket": bucket, "Key": key})
    copied = s3.get_object(Bucket=bucket, Key=f"{key}.copy")["Body"].read()
    s3.delete_object(Bucket=bucket, Key=f"{key}.copy")
    after = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=f"{signature}/")["Contents"]]
    ok(f"put, get, list, copy, delete ({name})",
       got == b"hello virtual" and listed == [key] and copied == got and after == [key])
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key})
    ok(f"presigned GET ({name})", urllib.parse.urlsplit(url).netloc == f"{bucket}.s3.test:{port}"
       and fetch(url) == (200, b"hello virtual"))

# Every call went to the bucket's host, its path the key alone.
ok("virtual-hosted requests", len(seen) > 0
   and all(netloc == f"{bucket}.s3.test:{port}" and not path.startswith(f"/{bucket}")
           for netloc, path in seen))
