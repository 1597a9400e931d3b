"""genobatch on AWS: infrastructure (``infra``), the AWS Batch backend (``batch_backend``), S3 staging."""
