"""Where data lives: local paths or S3 URIs (``s3``)."""

DONE_MARKER = ".task.json"  # a task's record, written (and uploaded) last: its output is complete once it exists
