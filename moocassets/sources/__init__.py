"""Source clients: the MOOC (Open edX) and H5P APIs as Dagster resources.

All HTTP behaviour (timeouts, retries, backoff, Retry-After, adaptive concurrency, redaction,
stats) lives in :mod:`moocassets.sources.http`; see that module's docstring.
"""

from moocassets.sources.errors import (
    SourceAuthError,
    SourceError,
    SourceHTTPError,
    SourcePayloadError,
    SourceUnavailableError,
)
from moocassets.sources.h5p import H5PApiResource
from moocassets.sources.http import AdaptiveLimiter, Fetched, FetchStats
from moocassets.sources.mooc import MoocApiResource, encode_course
from moocassets.sources.redaction import redact

__all__ = [
    "AdaptiveLimiter",
    "FetchStats",
    "Fetched",
    "H5PApiResource",
    "MoocApiResource",
    "SourceAuthError",
    "SourceError",
    "SourceHTTPError",
    "SourcePayloadError",
    "SourceUnavailableError",
    "encode_course",
    "redact",
]
