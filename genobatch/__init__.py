"""genobatch: genomics pipelines as batch jobs, on one machine or on AWS Batch."""

__version__ = "0.1.0"
