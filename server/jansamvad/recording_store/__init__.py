"""Where a town hall's record and the leader's audio recording are kept: an object store (`base.ObjectStore`), on the
filesystem by default (`fs.py`) or in an S3-compatible bucket for deployments (`s3.py`)."""
