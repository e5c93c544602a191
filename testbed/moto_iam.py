"""Create IAM principals in a running moto (before IAM enforcement is on).

usage: moto_iam.py ENDPOINT ALLOW
  ALLOW is a comma-separated list of actions the instance role may perform
  (e.g. "sts:AssumeRole"). Creates role "instance-b" with that policy and
  assumes it, as EC2 does for an instance profile, and role "ecr-pull" with
  no permissions. Prints the instance credentials and the role ARN as JSON:
  {"AccessKeyId", "SecretAccessKey", "Token", "RoleArn"}.
"""

import json
import sys

import boto3

endpoint, allow = sys.argv[1], [a for a in sys.argv[2].split(",") if a]
session = dict(
    endpoint_url=endpoint,
    region_name="us-east-1",
    aws_access_key_id="testing",
    aws_secret_access_key="testing",
)
iam = boto3.client("iam", **session)
trust = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}],
}
instance = iam.create_role(RoleName="instance-b", AssumeRolePolicyDocument=json.dumps(trust))["Role"]
if allow:
    iam.put_role_policy(
        RoleName="instance-b",
        PolicyName="instance-b",
        PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": allow, "Resource": "*"}]}
        ),
    )
role = iam.create_role(RoleName="ecr-pull", AssumeRolePolicyDocument=json.dumps(trust))["Role"]
creds = boto3.client("sts", **session).assume_role(
    RoleArn=instance["Arn"], RoleSessionName="i-0123456789abcdef0", DurationSeconds=43200
)["Credentials"]
print(
    json.dumps(
        {
            "AccessKeyId": creds["AccessKeyId"],
            "SecretAccessKey": creds["SecretAccessKey"],
            "Token": creds["SessionToken"],
            "RoleArn": role["Arn"],
        }
    )
)
