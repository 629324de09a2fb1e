"""Errors that cross stage boundaries."""


class SourceError(Exception):
    """A frame source cannot start or has given up; the service reports it and stays up."""
