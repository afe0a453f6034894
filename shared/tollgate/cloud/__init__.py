"""The adapter layer: the only code that talks to Google Cloud (or its local stand-ins).

Clients are created lazily, never at import time, and always from the standard libraries:
google-cloud-storage, -pubsub, -firestore and -run. Locally the same clients reach the
emulators through their standard variables and the local Cloud Run Admin API through
``CLOUD_RUN_API_ENDPOINT``.
"""

from tollgate.cloud.clients import Cloud

__all__ = ["Adapters", "Cloud"]


class Adapters:
    """The Cloud and its Firestore state for ``settings()``, each made on first use: what the CLI's target and
    the console read through. ``cloud`` and ``state`` may be given (tests, benchmarks)."""

    def __init__(self, cloud: Cloud | None = None, state: object | None = None) -> None:
        self._cloud, self._state = cloud, state

    def settings(self):  # type: ignore[no-untyped-def]
        from tollgate.settings import Settings

        return Settings.from_env()

    @property
    def cloud(self) -> Cloud:
        if self._cloud is None:
            self._cloud = Cloud(self.settings())
        return self._cloud

    @property
    def state(self):  # type: ignore[no-untyped-def]
        if self._state is None:
            from tollgate.cloud.state import State

            self._state = State(self.cloud.firestore)
        return self._state
