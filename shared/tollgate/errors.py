"""Domain errors: what a step, a review or a deployment can say went wrong, in the core's words. The HTTP layers
map them to status codes (tollgate.reviews); nothing here knows about HTTP or Cloud clients."""

from __future__ import annotations


class ArtifactError(Exception):
    """An artifact cannot be trusted: hash mismatch, not a skops file, nodes outside the allow-list, or a model
    whose structure fails a check (tollgate.artifacts, tollgate.modelcheck)."""


class NotFound(LookupError):
    """What was asked for does not exist (an object in the bucket, say): the adapters raise it in place of their
    client libraries' not-found errors, so the core never imports a Google client to tell."""


class InferError(ValueError):
    """The data cannot give a spec (`tollgate spec infer`); the message says why and what to do."""


class StepFailed(Exception):
    """A step cannot finish whatever we retry; the run is marked failed with this message."""


class DeploymentFailed(RuntimeError):
    """Cloud Run did not take the new traffic; Firestore says what should serve, so a retry finishes it."""


class ReviewError(Exception):
    """A review action that cannot be done; the message says what would."""


class InvalidReview(ReviewError):
    """The action or its reviewer and reason are missing or unknown."""


class ReviewNotFound(ReviewError):
    """No review exists for the run."""


class ReviewClosed(ReviewError):
    """The review is decided already."""


class ReviewStale(ReviewError):
    """The champion changed since the run was evaluated: approving would promote on stale evidence."""


class ReviewExpired(ReviewError):
    """The review's deadline passed: it expired, and the champion stays."""
