"""watchsync: keep a local folder and an S3 bucket in sync."""

__all__ = ["__version__"]
__version__ = "0.1.0"
