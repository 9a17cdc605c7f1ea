"""boto3's object tagging calls against a running master: one line per check, "ok <name>".

python3 tests/clients/boto3_tagging_check.py <endpoint> <access key> <secret key> <bucket>
"""
import io
import os
import sys

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

endpoint, access, secret, bucket = sys.argv[1:5]
config = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1})
s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=access,
                  aws_secret_access_key=secret, region_name="us-east-1", config=config)
MiB = 1024 * 1024


def ok(name, got, want):
    if got != want:
        raise SystemExit(f"FAILED {name}:\n got  {got!r}\n want {want!r}")
    print(f"ok {name}", flush=True)


def tags(key, client=s3):
    return client.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]


def error(call):
    try:
        call()
    except s3.exceptions.ClientError as e:
        err = e.response["Error"]
        return (e.response["ResponseMetadata"]["HTTPStatusCode"], err["Code"], err["Message"])
    return None


def tag_set(*pairs):
    return [{"Key": k, "Value": v} for k, v in pairs]


s3.create_bucket(Bucket=bucket)
s3.put_object(Bucket=bucket, Key="k", Body=b"value", Tagging="project=mkv&env=dev%20box")
ok("put_object's Tagging is kept, in key order; head_object and get_object count it",
   [tags("k"), s3.head_object(Bucket=bucket, Key="k")["TagCount"],
    s3.get_object(Bucket=bucket, Key="k")["TagCount"]],
   [tag_set(("env", "dev box"), ("project", "mkv")), 2, 2])

answer = s3.put_object_tagging(Bucket=bucket, Key="k",
                               Tagging={"TagSet": tag_set(("b", "2"), ("a", "1"), ("c", ""))})
ok("put_object_tagging replaces the tags (200, no version named)",
   [answer["ResponseMetadata"]["HTTPStatusCode"], "VersionId" in answer, tags("k")],
   [200, False, tag_set(("a", "1"), ("b", "2"), ("c", ""))])

answer = s3.delete_object_tagging(Bucket=bucket, Key="k")
ok("delete_object_tagging removes them (204); the object has no TagCount then",
   [answer["ResponseMetadata"]["HTTPStatusCode"], tags("k"),
    "TagCount" in s3.head_object(Bucket=bucket, Key="k")],
   [204, [], False])

s3.put_object_tagging(Bucket=bucket, Key="k", Tagging={"TagSet": tag_set(("src", "1"))})
s3.copy_object(Bucket=bucket, Key="copied", CopySource={"Bucket": bucket, "Key": "k"})
s3.copy_object(Bucket=bucket, Key="retagged", CopySource={"Bucket": bucket, "Key": "k"},
               TaggingDirective="REPLACE", Tagging="new=1")
ok("copy_object copies the source's tags, or TaggingDirective REPLACE's",
   [tags("copied"), tags("retagged")], [tag_set(("src", "1")), tag_set(("new", "1"))])

data = os.urandom(12 * MiB)
cfg = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
s3.upload_fileobj(io.BytesIO(data), bucket, "big", Config=cfg, ExtraArgs={"Tagging": "size=big"})
ok("a multipart upload_fileobj's Tagging is the object's once completed",
   [tags("big"), s3.head_object(Bucket=bucket, Key="big")["ContentLength"]],
   [tag_set(("size", "big")), len(data)])

ok("11 tags is BadRequest",
   error(lambda: s3.put_object_tagging(
       Bucket=bucket, Key="k",
       Tagging={"TagSet": tag_set(*[(f"k{i}", "v") for i in range(11)])})),
   (400, "BadRequest", "Object tags cannot be greater than 10"))
ok("a key with a character S3 refuses is InvalidTag",
   error(lambda: s3.put_object_tagging(Bucket=bucket, Key="k",
                                       Tagging={"TagSet": tag_set(("a,b", "v"))})),
   (400, "InvalidTag", "The TagKey you have provided is invalid"))
ok("a key given twice is InvalidTag",
   error(lambda: s3.put_object_tagging(Bucket=bucket, Key="k",
                                       Tagging={"TagSet": tag_set(("a", "1"), ("a", "2"))})),
   (400, "InvalidTag", "Cannot provide multiple Tags with the same key"))
ok("put_object's Tagging naming a tag twice is InvalidArgument",
   error(lambda: s3.put_object(Bucket=bucket, Key="bad", Body=b"v", Tagging="a=1&a=2")),
   (400, "InvalidArgument", "The header 'x-amz-tagging' shall be encoded as UTF-8 then "
    "URLEncoded URL query parameters without tag name duplicates."))
ok("get_object_tagging of a missing key is NoSuchKey",
   error(lambda: tags("nope")), (404, "NoSuchKey", "The specified key does not exist."))

v2 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=access,
                  aws_secret_access_key=secret, region_name="us-east-1",
                  config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                                signature_version="s3"))
v2.put_object_tagging(Bucket=bucket, Key="k", Tagging={"TagSet": tag_set(("v2", "1"))})
ok("signed with Signature Version 2 (?tagging in its resource)", tags("k", v2),
   tag_set(("v2", "1")))
bad = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=access,
                   aws_secret_access_key="wrong", region_name="us-east-1", config=config)
ok("a wrong secret is SignatureDoesNotMatch, the tags as they were",
   [error(lambda: tags("k", bad))[:2], tags("k")],
   [(403, "SignatureDoesNotMatch"), tag_set(("v2", "1"))])
