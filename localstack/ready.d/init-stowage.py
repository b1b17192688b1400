"""LocalStack ready hook: create Stowage's two buckets and the staging lifecycle rule.

Runs from /etc/localstack/init/ready.d in the Docker image, and from
$FILESYSTEM_ROOT/etc/localstack/init/ready.d in host mode (localstack/host.sh). Bucket names and
the upload TTL come from the same STOWAGE_* variables the service reads.
"""

import math
import os
import re

import boto3
from botocore.exceptions import ClientError

UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def ttl_seconds(text: str) -> int:
    total = 0
    for number, unit in re.findall(r"(\d+)\s*([a-z]+)", text.strip().lower()):
        total += int(number) * UNITS.get(unit, 3600)
    return total or 72 * 3600


def endpoint() -> str:
    listen = os.environ.get("GATEWAY_LISTEN", "127.0.0.1:4566").split(",")[0]
    host, _, port = listen.rpartition(":")
    if host in ("", "0.0.0.0", "[::]", "::"):
        host = "127.0.0.1"
    return f"http://{host}:{port or 4566}"


def main() -> None:
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint(),
        region_name=os.environ.get("STOWAGE_S3_REGION", "us-east-1"),
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    staging = os.environ.get("STOWAGE_STAGING_BUCKET", "stowage-staging")
    files = os.environ.get("STOWAGE_FILES_BUCKET", "stowage-files")
    for bucket in (staging, files):
        try:
            s3.create_bucket(Bucket=bucket)
        except ClientError as error:
            if error.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise
    days = math.ceil(ttl_seconds(os.environ.get("STOWAGE_UPLOAD_TTL", "72h")) / 86400) + 1
    s3.put_bucket_lifecycle_configuration(
        Bucket=staging,
        LifecycleConfiguration={
            "Rules": [
                {
                    "ID": "stowage-staging-backstop",
                    "Status": "Enabled",
                    "Filter": {"Prefix": ""},
                    "Expiration": {"Days": days},
                    "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
                }
            ]
        },
    )
    print(f"stowage: buckets {staging} and {files} ready, staging objects expire after {days} days")


main()
