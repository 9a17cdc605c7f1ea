"""boto3's get_object_attributes against a running master: one line per check, "ok <name>".

python3 tests/clients/boto3_attributes_check.py <endpoint> <access key> <secret key> <bucket>
"""
import base64
import hashlib
import io
import os
import sys
import zlib

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

endpoint, access, secret, bucket = sys.argv[1:5]
config = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1})
s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=access,
                  aws_secret_access_key=secret, region_name="us-east-1", config=config)
ALL = ["ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"]
MiB = 1024 * 1024


def ok(name, got, want):
    if got != want:
        raise SystemExit(f"FAILED {name}:\n got  {got!r}\n want {want!r}")
    print(f"ok {name}", flush=True)


def attributes(key, **kw):
    """The answer's attributes, its headers' Last-Modified among them."""
    out = s3.get_object_attributes(Bucket=bucket, Key=key, ObjectAttributes=ALL, **kw)
    del out["ResponseMetadata"]
    return out


def error(call):
    try:
        call()
    except s3.exceptions.ClientError as e:
        err = e.response["Error"]
        return (e.response["ResponseMetadata"]["HTTPStatusCode"], err["Code"], err["Message"])
    return None


def crc32(data):
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


s3.create_bucket(Bucket=bucket)
small = b"hello attributes"
s3.put_object(Bucket=bucket, Key="small", Body=small, ChecksumAlgorithm="CRC32")
head = s3.head_object(Bucket=bucket, Key="small")
ok("a PutObject's attributes: unquoted ETag, its CRC32, size, class, no parts",
   attributes("small"), {
       "LastModified": head["LastModified"],
       "ETag": hashlib.md5(small).hexdigest(),
       "Checksum": {"ChecksumCRC32": crc32(small), "ChecksumType": "FULL_OBJECT"},
       "StorageClass": "STANDARD",
       "ObjectSize": len(small),
   })
ok("only the attributes asked for",
   s3.get_object_attributes(Bucket=bucket, Key="small", ObjectAttributes=["ObjectSize"])
   ["ObjectSize"], len(small))

data = os.urandom(12 * MiB)
parts = [data[:5 * MiB], data[5 * MiB:10 * MiB], data[10 * MiB:]]
cfg = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
s3.upload_fileobj(io.BytesIO(data), bucket, "big", Config=cfg, ExtraArgs={"ChecksumAlgorithm": "CRC32"})
composite = crc32(b"".join(zlib.crc32(p).to_bytes(4, "big") for p in parts))
etag = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest() + "-3"
sizes = [{"PartNumber": n, "Size": len(p)} for n, p in enumerate(parts, 1)]
got = attributes("big")
ok("a multipart upload's attributes: its parts by number and size, the composite CRC32 unsuffixed",
   got, {
       "LastModified": s3.head_object(Bucket=bucket, Key="big")["LastModified"],
       "ETag": etag,
       "Checksum": {"ChecksumCRC32": composite, "ChecksumType": "COMPOSITE"},
       "ObjectParts": {"TotalPartsCount": 3, "PartNumberMarker": 0, "NextPartNumberMarker": 3,
                       "MaxParts": 1000, "IsTruncated": False, "Parts": sizes},
       "StorageClass": "STANDARD",
       "ObjectSize": len(data),
   })
ok("MaxParts pages the parts, PartNumberMarker goes on after one", [
    attributes("big", MaxParts=2)["ObjectParts"],
    attributes("big", MaxParts=2, PartNumberMarker=2)["ObjectParts"],
], [
    {"TotalPartsCount": 3, "PartNumberMarker": 0, "NextPartNumberMarker": 2, "MaxParts": 2,
     "IsTruncated": True, "Parts": sizes[:2]},
    {"TotalPartsCount": 3, "PartNumberMarker": 2, "NextPartNumberMarker": 3, "MaxParts": 2,
     "IsTruncated": False, "Parts": sizes[2:]},
])

s3.upload_fileobj(io.BytesIO(data), bucket, "whole", Config=cfg,
                  ExtraArgs={"ChecksumCRC32": crc32(data), "ChecksumType": "FULL_OBJECT"})
got = attributes("whole")
ok("a multipart object with a whole-object checksum: its parts counted, not listed",
   [got["ObjectParts"], got["Checksum"]],
   [{"TotalPartsCount": 3}, {"ChecksumCRC32": crc32(data), "ChecksumType": "FULL_OBJECT"}])

ok("a missing key is NoSuchKey",
   error(lambda: attributes("nope")), (404, "NoSuchKey", "The specified key does not exist."))
ok("a missing bucket is NoSuchBucket",
   error(lambda: s3.get_object_attributes(Bucket=bucket + "-none", Key="k", ObjectAttributes=["ETag"])),
   (404, "NoSuchBucket", "The specified bucket does not exist"))
ok("an attribute S3 does not have is InvalidArgument",
   error(lambda: s3.get_object_attributes(Bucket=bucket, Key="small", ObjectAttributes=["Size"])),
   (400, "InvalidArgument", "Invalid attribute name specified."))
bad = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=access, aws_secret_access_key="wrong",
                   region_name="us-east-1", config=config)
ok("a wrong secret is SignatureDoesNotMatch",
   error(lambda: bad.get_object_attributes(Bucket=bucket, Key="small", ObjectAttributes=["ETag"]))[:2],
   (403, "SignatureDoesNotMatch"))
