"""The IAM documents genobatch creates: pure functions, so tests can assert exactly what is granted.

Least privilege: a job may list its run bucket and read/write objects in it, nothing else. The Batch service
role and the ECS instance role get AWS's managed policies for those services (what AWS's own setup uses).
"""

from __future__ import annotations

from typing import Any

BATCH_SERVICE_POLICY = "arn:aws:iam::aws:policy/service-role/AWSBatchServiceRole"
ECS_INSTANCE_POLICY = "arn:aws:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role"
VERSION = "2012-10-17"


def trust_policy(service: str) -> dict[str, Any]:
    """Who may assume the role: one AWS service (batch, ec2 or ecs-tasks)."""
    return {
        "Version": VERSION,
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": f"{service}.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }


def job_bucket_policy(bucket: str) -> dict[str, Any]:
    """What a job may do: list its bucket, and read, write and multipart-upload objects in it. No delete, no
    other bucket, no other service."""
    return {
        "Version": VERSION,
        "Statement": [
            {
                "Sid": "ListRunBucket",
                "Effect": "Allow",
                "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
                "Resource": f"arn:aws:s3:::{bucket}",
            },
            {
                "Sid": "ReadWriteRunObjects",
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
                "Resource": f"arn:aws:s3:::{bucket}/*",
            },
        ],
    }
