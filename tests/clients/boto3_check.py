"""boto3 against a running master: one line per check, "ok <name>" or a traceback.

python3 tests/clients/boto3_check.py <endpoint> <access key> <secret key> <bucket>
"""
import base64
import hashlib
import io
import os
import sys
import urllib.error
import urllib.request
import zlib

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

endpoint, access, secret, bucket = sys.argv[1:5]
s3 = boto3.client(
    "s3",
    endpoint_url=endpoint,
    aws_access_key_id=access,
    aws_secret_access_key=secret,
    region_name="us-east-1",
    config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
)


def ok(name, cond):
    if not cond:
        raise SystemExit(f"FAILED {name}")
    print(f"ok {name}", flush=True)


key = "dir one/c+d.txt"
s3.create_bucket(Bucket=bucket)
s3.put_object(Bucket=bucket, Key=key, Body=b"hello boto", ContentType="text/plain", Metadata={"x": "y"})
got = s3.get_object(Bucket=bucket, Key=key)
ok("get", got["Body"].read() == b"hello boto" and got["ContentType"] == "text/plain"
   and got["Metadata"] == {"x": "y"} and got["ETag"] == '"%s"' % hashlib.md5(b"hello boto").hexdigest())
ok("head", s3.head_object(Bucket=bucket, Key=key)["ContentLength"] == 10)
ok("range", s3.get_object(Bucket=bucket, Key=key, Range="bytes=0-4")["Body"].read() == b"hello")
ok("list", [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == [key])
ok("delimiter", s3.list_objects_v2(Bucket=bucket, Delimiter="/")["CommonPrefixes"] == [{"Prefix": "dir one/"}])
data = os.urandom(12 * 1024 * 1024)
cfg = TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024)
s3.upload_fileobj(io.BytesIO(data), bucket, "big.bin", Config=cfg)
big = s3.get_object(Bucket=bucket, Key="big.bin")
ok("multipart", hashlib.md5(big["Body"].read()).digest() == hashlib.md5(data).digest()
   and big["ETag"].endswith('-3"'))
# A whole-object checksum (S3's FULL_OBJECT type) goes with CompleteMultipartUpload:
# it is the object's, not the XML body's.
crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
s3.upload_fileobj(io.BytesIO(data), bucket, "summed.bin", Config=cfg,
                  ExtraArgs={"ChecksumCRC32": crc, "ChecksumType": "FULL_OBJECT"})
upload = s3.create_multipart_upload(Bucket=bucket, Key="missummed.bin")["UploadId"]
etag = s3.upload_part(Bucket=bucket, Key="missummed.bin", UploadId=upload, PartNumber=1,
                      Body=b"not the data")["ETag"]
try:
    s3.complete_multipart_upload(Bucket=bucket, Key="missummed.bin", UploadId=upload,
                                 ChecksumCRC32=crc, ChecksumType="FULL_OBJECT",
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    refused = False
except s3.exceptions.ClientError as e:
    refused = e.response["Error"]["Code"] == "BadDigest"
ok("multipart with a whole-object checksum", refused
   and s3.get_object(Bucket=bucket, Key="summed.bin")["Body"].read() == data
   and "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix="missummed"))
s3.abort_multipart_upload(Bucket=bucket, Key="missummed.bin", UploadId=upload)
# Kept and answered when asked: boto3 checks the body it reads against it.
head = s3.head_object(Bucket=bucket, Key="summed.bin", ChecksumMode="ENABLED")
got = s3.get_object(Bucket=bucket, Key="summed.bin", ChecksumMode="ENABLED")
ok("checksum mode answers the whole-object CRC32", head.get("ChecksumCRC32") == crc
   and head.get("ChecksumType") == "FULL_OBJECT" and got["Body"].read() == data
   and got.get("ChecksumCRC32") == crc)
s3.delete_object(Bucket=bucket, Key="summed.bin")
try:
    s3.put_object(Bucket=bucket, Key="crc64.bin", Body=b"hello", ChecksumCRC64NVME="AAAAAAAAAAA=")
    refused = False
except s3.exceptions.ClientError as e:
    refused = e.response["Error"]["Code"] == "BadDigest"
ok("a wrong CRC64NVME is BadDigest", refused
   and "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix="crc64"))
s3.copy({"Bucket": bucket, "Key": "big.bin"}, bucket, "big-copy.bin", Config=cfg)
copied = s3.get_object(Bucket=bucket, Key="big-copy.bin")
ok("managed copy (UploadPartCopy)", hashlib.md5(copied["Body"].read()).digest() == hashlib.md5(data).digest()
   and copied["ETag"].endswith('-3"'))
s3.copy_object(Bucket=bucket, Key="copy.txt", CopySource={"Bucket": bucket, "Key": key})
ok("copy", s3.get_object(Bucket=bucket, Key="copy.txt")["Body"].read() == b"hello boto")
url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=60)
ok("presigned (Signature Version 2, boto3's default)", "AWSAccessKeyId=" in url
   and urllib.request.urlopen(url).read() == b"hello boto")
v4 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=access, aws_secret_access_key=secret,
                  region_name="us-east-1",
                  config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
url4 = v4.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=60)
ok("presigned (Signature Version 4)", "X-Amz-Signature=" in url4
   and urllib.request.urlopen(url4).read() == b"hello boto")


def put(url, body, headers):
    """A PUT with urllib: its status and body, an error's too."""
    req = urllib.request.Request(url, data=body, method="PUT", headers=headers)
    try:
        with urllib.request.urlopen(req) as res:
            return res.status, res.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


# A checksum given to a presigned PutObject is a header the URL signs: the
# uploader sends it, and a body it does not match is BadDigest.
crc_hello = base64.b64encode(zlib.crc32(b"hello").to_bytes(4, "big")).decode()
put_url = v4.generate_presigned_url("put_object", ExpiresIn=60, Params={
    "Bucket": bucket, "Key": "presigned-put", "ChecksumCRC32": crc_hello})
refused = put(put_url, b"other", {"x-amz-checksum-crc32": crc_hello})
stored = put(put_url, b"hello", {"x-amz-checksum-crc32": crc_hello})
ok("presigned PutObject with a signed checksum: BadDigest for other bytes",
   refused[0] == 400 and b"<Code>BadDigest</Code>" in refused[1] and stored == (200, b"")
   and s3.get_object(Bucket=bucket, Key="presigned-put")["Body"].read() == b"hello")
s3.delete_object(Bucket=bucket, Key="presigned-put")
# boto3 sends the whole body before it reads the answer: a refused 8 MiB
# PutObject must still be read through to its 412 (not a closed connection).
s3.put_object(Bucket=bucket, Key="once", Body=b"first")
try:
    s3.put_object(Bucket=bucket, Key="once", Body=os.urandom(8 * 1024 * 1024), IfNoneMatch="*")
    ok("refused 8 MiB put answers PreconditionFailed", False)
except s3.exceptions.ClientError as e:
    ok("refused 8 MiB put answers PreconditionFailed",
       e.response["Error"]["Code"] == "PreconditionFailed"
       and e.response["ResponseMetadata"]["HTTPStatusCode"] == 412
       and s3.get_object(Bucket=bucket, Key="once")["Body"].read() == b"first")
s3.delete_object(Bucket=bucket, Key="once")
# Signature Version 2 in the header (HmacV1) signs a bucket call's resource
# as "/bucket/" though its path is "/bucket".
v2 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=access, aws_secret_access_key=secret,
                  region_name="us-east-1",
                  config=Config(signature_version="s3", s3={"addressing_style": "path"},
                                retries={"max_attempts": 1}))
ok("Signature Version 2 bucket calls",
   v2.head_bucket(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 200
   and key in [o["Key"] for o in v2.list_objects_v2(Bucket=bucket)["Contents"]]
   and key in [o["Key"] for o in v2.list_objects(Bucket=bucket)["Contents"]]
   and v2.get_object(Bucket=bucket, Key=key)["Body"].read() == b"hello boto")
deleted = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "copy.txt"}, {"Key": "big.bin"}, {"Key": "big-copy.bin"}]})
ok("delete objects", sorted(d["Key"] for d in deleted["Deleted"]) == ["big-copy.bin", "big.bin", "copy.txt"])
try:
    s3.get_object(Bucket=bucket, Key="nope")
    ok("no such key", False)
except s3.exceptions.NoSuchKey as e:
    ok("no such key", e.response["Error"]["Key"] == "nope")
try:
    s3.copy_object(Bucket=bucket, Key="to", CopySource={"Bucket": bucket, "Key": "gone/src"})
    ok("copy of a missing source names its key", False)
except s3.exceptions.NoSuchKey as e:
    ok("copy of a missing source names its key", e.response["Error"]["Key"] == "gone/src")
try:
    s3.copy_object(Bucket=bucket, Key="to", CopySource={"Bucket": bucket + "-none", "Key": "src"})
    ok("copy from a missing bucket: NoSuchBucket, named", False)
except s3.exceptions.NoSuchBucket as e:
    ok("copy from a missing bucket: NoSuchBucket, named",
       e.response["Error"]["BucketName"] == bucket + "-none")
upload = s3.create_multipart_upload(Bucket=bucket, Key="parts")["UploadId"]
try:
    s3.upload_part_copy(Bucket=bucket, Key="parts", UploadId=upload, PartNumber=1,
                        CopySource={"Bucket": bucket, "Key": "gone/src"})
    ok("part copy of a missing source names its key", False)
except s3.exceptions.NoSuchKey as e:
    ok("part copy of a missing source names its key", e.response["Error"]["Key"] == "gone/src")
try:
    s3.upload_part_copy(Bucket=bucket, Key="parts", UploadId=upload, PartNumber=1,
                        CopySource={"Bucket": bucket + "-none", "Key": "src"})
    ok("part copy from a missing bucket: NoSuchBucket, named", False)
except s3.exceptions.NoSuchBucket as e:
    ok("part copy from a missing bucket: NoSuchBucket, named",
       e.response["Error"]["BucketName"] == bucket + "-none")
s3.abort_multipart_upload(Bucket=bucket, Key="parts", UploadId=upload)
try:
    s3.list_objects_v2(Bucket=bucket + "-none")
    ok("no such bucket names it", False)
except s3.exceptions.NoSuchBucket as e:
    ok("no such bucket names it", e.response["Error"]["BucketName"] == bucket + "-none")
bad = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=access, aws_secret_access_key="wrong",
                   region_name="us-east-1", config=Config(s3={"addressing_style": "path"}))
try:
    bad.list_objects_v2(Bucket=bucket)
    ok("wrong secret refused", False)
except bad.exceptions.ClientError as e:
    ok("wrong secret refused", e.response["Error"]["Code"] == "SignatureDoesNotMatch")
