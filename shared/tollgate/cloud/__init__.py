"""The adapter layer: the only code that talks to Google Cloud (or its local stand-ins).

Clients are created lazily, never at import time, and always from the standard libraries:
google-cloud-storage, -pubsub, -firestore and -run. Locally the same clients reach the
emulators through their standard variables and the local Cloud Run Admin API through
``CLOUD_RUN_API_ENDPOINT``.
"""

from typing import Any

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

    def dataset_statuses(self, predictor_url: Any = None) -> list[dict[str, Any]]:
        """Every dataset that has a spec or a record (a pushed spec before its first run too), as `tollgate status`
        and the console's overview show it: its champion and the run that made it, its predictor's URL
        (``predictor_url(name)``; default: asked of Cloud Run for a dataset that serves) and its pending reviews."""
        from tollgate import views
        from tollgate.cloud import run as cloudrun

        def url(name: str) -> str | None:
            service = cloudrun.get_service(self.cloud, name)
            return service.uri if service else None

        known = {ds["name"]: ds for ds in self.state.list_datasets()}
        out = []
        for name in sorted(set(known) | set(self.cloud.list_specs())):
            ds = known.get(name) or {"name": name}
            champion = ds.get("champion_version")
            record = self.state.get_version(name, champion) if champion else None
            link = (predictor_url or url)(name) if champion is not None or predictor_url else None
            out.append(views.dataset_status(ds, self.state.get_run(record["run_id"]) if record else None, link,
                                            len(self.state.list_reviews("pending", name))))
        return out
