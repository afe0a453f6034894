"""The adapter layer: the only code that talks to Google Cloud (or its local stand-ins).

Clients are created lazily, never at import time, and always from the standard libraries:
google-cloud-storage, -pubsub, -firestore and -run. Locally the same clients reach the
emulators through their standard variables and the local Cloud Run Admin API through
``CLOUD_RUN_API_ENDPOINT``.
"""

from tollgate.cloud.clients import Cloud

__all__ = ["Cloud"]
