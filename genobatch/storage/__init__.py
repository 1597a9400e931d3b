"""Where data lives: local paths or S3 URIs (``s3``)."""
