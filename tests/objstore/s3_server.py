"""A real S3 API server for the object-store tests and benchmarks: moto's, on
127.0.0.1:PORT, that requires signed requests from a key it made.

moto serves S3 (multipart uploads, ranged GETs, listing, batch delete) from memory,
spilling objects over 16 MiB to temporary files, here under DATA_DIR. It checks request
signatures only once INITIAL_NO_AUTH_ACTION_COUNT requests have been served: the first
three (IAM: a user, its policy, its access key) make the credentials, and from the
fourth on every request must be signed with them (a wrong secret or an unsigned request
gets 403).

Prints one JSON line: {"endpoint", "accessKeyId", "secretAccessKey"}; serves until its
standard input closes or it is killed.
Usage: s3_server.py PORT BUCKET DATA_DIR
"""
import json
import os
import sys
import tempfile

port, bucket, data = int(sys.argv[1]), sys.argv[2], sys.argv[3]
os.makedirs(data, exist_ok=True)
os.environ["TMPDIR"] = data
tempfile.tempdir = data
# Read by moto at import: the three IAM calls below are the only unsigned requests.
os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = "3"

import boto3  # noqa: E402
from moto.server import ThreadedMotoServer  # noqa: E402

server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
server.start()
endpoint = f"http://127.0.0.1:{port}"
iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1",
                   aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
iam.create_user(UserName="stasis")
iam.put_user_policy(UserName="stasis", PolicyName="objects", PolicyDocument=json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
}))
key = iam.create_access_key(UserName="stasis")["AccessKey"]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"])
s3.create_bucket(Bucket=bucket)
print(json.dumps({"endpoint": endpoint, "accessKeyId": key["AccessKeyId"],
                  "secretAccessKey": key["SecretAccessKey"]}), flush=True)
sys.stdin.read()
server.stop()
