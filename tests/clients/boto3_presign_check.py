"""Presigned URLs whose query carries request headers (x-amz-meta-*, x-amz-tagging, ...),
made by botocore and sent with urllib: one line per check, "ok <name>".

python3 tests/clients/boto3_presign_check.py <endpoint> <access key> <secret key> <bucket>
"""
import sys
import urllib.error
import urllib.request
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import boto3
from botocore.auth import S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

endpoint, access, secret, bucket = sys.argv[1:5]


def client(signature_version=None):
    config = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                    signature_version=signature_version)
    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=access,
                        aws_secret_access_key=secret, region_name="us-east-1", config=config)


s3 = client()  # boto3's default presigns with Signature Version 2
v4 = client("s3v4")


def ok(name, got, want):
    if got != want:
        raise SystemExit(f"FAILED {name}:\n got  {got!r}\n want {want!r}")
    print(f"ok {name}", flush=True)


def send(url, method="PUT", body=b"", headers=None):
    """The status and body of a request to `url`, an error's too (urllib sends a body
    without a Content-Type as application/x-www-form-urlencoded)."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req) as res:
            return res.status, res.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def code(answer):
    """An error answer's status and <Code>."""
    status, body = answer
    text = body.decode()
    return status, text[text.find("<Code>") + 6:text.find("</Code>")] if "<Code>" in text else text


def query_names(url):
    return sorted(name for name, _ in parse_qsl(urlsplit(url).query))


def presign_v4(method, key, params, headers=None, expires=60):
    """A Version 4 URL signed over a query holding `params` (and over `headers`, for
    the uploader to send), as the AWS SDKs for JavaScript, PHP and Ruby presign a
    call's x-amz-* headers (botocore's signer)."""
    url = f"{endpoint}/{bucket}/{quote(key)}"
    if params:
        url += "?" + urlencode(params, quote_via=quote)
    req = AWSRequest(method=method, url=url, headers=headers or {})
    S3SigV4QueryAuth(Credentials(access, secret), "s3", "us-east-1", expires=expires).add_auth(req)
    return req.url


def stored(key):
    head = s3.head_object(Bucket=bucket, Key=key)
    tags = s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return [body, head["ContentType"], head["Metadata"], head.get("StorageClass"),
            [(t["Key"], t["Value"]) for t in tags]]


def missing(key):
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except s3.exceptions.ClientError as e:
        return e.response["ResponseMetadata"]["HTTPStatusCode"]
    return 200


s3.create_bucket(Bucket=bucket)
params = {"Bucket": bucket, "Key": "v2", "Metadata": {"color": "Blue", "size": "9 cm"},
          "ContentType": "text/plain", "Tagging": "project=mkv&env=dev%20box",
          "StorageClass": "STANDARD"}
url = s3.generate_presigned_url("put_object", Params=params, ExpiresIn=60)
ok("boto3's default (Version 2) presigned put_object moves its x-amz-* headers to the query",
   query_names(url), ["AWSAccessKeyId", "Expires", "Signature", "content-type",
                      "x-amz-meta-color", "x-amz-meta-size", "x-amz-storage-class",
                      "x-amz-tagging"])
ok("a Version 2 presigned put_object keeps its Metadata and Tagging from the query",
   [send(url, body=b"v2 body", headers={"Content-Type": "text/plain"}), stored("v2")],
   [(200, b""), [b"v2 body", "text/plain", {"color": "Blue", "size": "9 cm"}, None,
                 [("env", "dev box"), ("project", "mkv")]]])
ok("a Version 2 presigned put_object sent with another Content-Type than it signs is SignatureDoesNotMatch",
   code(send(url.replace("v2?", "v2-no-type?"), body=b"v2 body")),
   (403, "SignatureDoesNotMatch"))
ok("an x-amz-meta-* added to a Version 2 presigned URL after signing is SignatureDoesNotMatch",
   [code(send(url.replace("v2?", "v2-more?") + "&x-amz-meta-extra=1", body=b"x",
              headers={"Content-Type": "text/plain"})), missing("v2-more")],
   [(403, "SignatureDoesNotMatch"), 404])

params = {**params, "Key": "v4-headers"}
url = v4.generate_presigned_url("put_object", Params=params, ExpiresIn=60)
signed = dict(parse_qsl(urlsplit(url).query))["X-Amz-SignedHeaders"]
ok("boto3's Version 4 presigned put_object signs its headers (Content-Type too) for the uploader to send",
   [signed, [n for n in query_names(url) if not n.startswith("X-Amz-")]],
   ["content-type;host;x-amz-meta-color;x-amz-meta-size;x-amz-storage-class;x-amz-tagging", []])
sent = {"Content-Type": "text/plain", "x-amz-meta-color": "Blue", "x-amz-meta-size": "9 cm",
        "x-amz-storage-class": "STANDARD", "x-amz-tagging": "project=mkv&env=dev%20box"}
ok("a Version 4 presigned put_object sent with the headers it signs keeps them",
   [send(url, body=b"v4 body", headers=sent), stored("v4-headers")],
   [(200, b""), [b"v4 body", "text/plain", {"color": "Blue", "size": "9 cm"}, None,
                 [("env", "dev box"), ("project", "mkv")]]])
ok("a Version 4 presigned put_object sent with another Content-Type than it signs is SignatureDoesNotMatch",
   code(send(url, body=b"v4 body", headers={k: v for k, v in sent.items() if k != "Content-Type"})),
   (403, "SignatureDoesNotMatch"))

hoisted = {"x-amz-meta-color": "Blue", "x-amz-meta-size": "9 cm",
           "x-amz-tagging": "project=mkv&env=dev%20box", "x-amz-storage-class": "STANDARD"}
url = presign_v4("PUT", "v4-query", hoisted)
ok("a Version 4 presigned PutObject keeps the x-amz-meta-* and x-amz-tagging of its query",
   [send(url, body=b"query body", headers={"Content-Type": "image/png"}), stored("v4-query")],
   [(200, b""), [b"query body", "image/png", {"color": "Blue", "size": "9 cm"}, None,
                 [("env", "dev box"), ("project", "mkv")]]])
ok("an x-amz-meta-* added to a Version 4 presigned URL after signing is SignatureDoesNotMatch",
   [code(send(presign_v4("PUT", "v4-more", hoisted) + "&x-amz-meta-extra=1", body=b"x")),
    missing("v4-more")],
   [(403, "SignatureDoesNotMatch"), 404])
ok("a query x-amz-meta-* changed after signing is SignatureDoesNotMatch",
   [code(send(presign_v4("PUT", "v4-changed", hoisted).replace("Blue", "Red"), body=b"x")),
    missing("v4-changed")],
   [(403, "SignatureDoesNotMatch"), 404])
url = presign_v4("PUT", "v4-both", {"x-amz-meta-color": "Blue"}, {"x-amz-meta-color": "Green"})
ok("a signed header the request sends itself wins over the query's",
   [send(url, body=b"both", headers={"x-amz-meta-color": "Green"}), stored("v4-both")[2]],
   [(200, b""), {"color": "Green"}])
