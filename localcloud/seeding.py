"""What the local cloud creates in its emulators once they run, as terraform does on Google Cloud: topics and pull
subscriptions, the functions' push subscriptions, the bucket and the dataset specs, the predictor services awaiting
a first model; and Firestore's export, which the next start imports."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Protocol

import requests

from localcloud.processes import LocalCloudError, scoped_env
from tollgate import topology as topo


class LocalCloud(Protocol):
    """What seeding reads of the local cloud (localcloud.cloud.LocalCloud)."""
    project: str
    bucket: str
    ports: dict[str, int]
    specs_dir: Path | None
    topology: topo.Topology

    def env(self) -> dict[str, str]: ...


def _exists(exc: Exception) -> bool:
    return "AlreadyExists" in type(exc).__name__ or "409" in str(exc)


def create_topics(cloud: LocalCloud) -> None:
    """Every topic of the topology, and the pull subscriptions jobs read (idempotent)."""
    with scoped_env(cloud.env()):
        from google.cloud import pubsub_v1

        publisher = pubsub_v1.PublisherClient()
        for topic in cloud.topology.topics:
            try:
                publisher.create_topic(name=publisher.topic_path(cloud.project, topic))
            except Exception as exc:  # AlreadyExists on an idempotent re-run
                if not _exists(exc):
                    raise
        subscriber = pubsub_v1.SubscriberClient()
        for sub in cloud.topology.subscriptions.values():
            try:
                subscriber.create_subscription(request={
                    "name": subscriber.subscription_path(cloud.project, sub.name),
                    "topic": publisher.topic_path(cloud.project, sub.topic),
                    "ack_deadline_seconds": sub.ack_deadline_seconds})
            except Exception as exc:
                if not _exists(exc):
                    raise


def subscribe_functions(cloud: LocalCloud) -> None:
    """A push subscription per event-driven function, to its port (which changes with each start)."""
    with scoped_env(cloud.env()):
        from google.cloud import pubsub_v1

        subscriber = pubsub_v1.SubscriberClient()
        for fn in cloud.topology.functions.values():
            if fn.http:
                continue
            sub = subscriber.subscription_path(cloud.project, cloud.topology.subscription_name(fn.name))
            try:
                subscriber.delete_subscription(subscription=sub)
            except Exception:
                pass
            subscriber.create_subscription(request={
                "name": sub, "topic": f"projects/{cloud.project}/topics/{fn.trigger_topic}",
                "push_config": {"push_endpoint": f"http://127.0.0.1:{cloud.ports['function:' + fn.name]}/"},
                "ack_deadline_seconds": 600,
                "retry_policy": {"minimum_backoff": {"seconds": 1}, "maximum_backoff": {"seconds": 60}},
            })


def checked_specs(specs_dir: Path | None) -> dict[str, Path]:
    """The dataset specs of ``specs_dir`` by name, each checked as `tollgate spec push` checks it (the rule
    language, the dataset name) and named like its file, or a message saying what to fix."""
    from tollgate import spec as specs

    found: dict[str, Path] = {}
    for path in sorted(specs_dir.glob("*.yaml")) if specs_dir else []:
        try:
            name = specs.load(path).name
        except specs.SpecError as exc:
            raise LocalCloudError(f"{path}: {exc}") from None
        if name != path.stem:
            raise LocalCloudError(f"{path}: the spec is named {name!r}; name the file {name}.yaml (a spec "
                                  "governs the incoming/<name>/ folder of its own name)")
        found[name] = path
    return found


def upload_specs(cloud: LocalCloud) -> None:
    """The bucket and the specs of ``specs_dir`` (a spec already there, e.g. pushed since, is kept)."""
    checked = checked_specs(cloud.specs_dir)
    with scoped_env(cloud.env()):
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        client = storage.Client(project=cloud.project, credentials=AnonymousCredentials())
        bucket = client.bucket(cloud.bucket)
        if not bucket.exists():
            client.create_bucket(cloud.bucket)
        for name, path in checked.items():
            blob = bucket.blob(f"specs/{name}.yaml")
            if not blob.exists():
                blob.upload_from_filename(str(path), content_type="application/yaml")


def create_predictors(cloud: LocalCloud) -> list[str]:
    """What terraform's modules/predictor makes on GCP: each spec's predictor service before its first model
    (healthy, answering 503 until a promotion takes it over); the services created."""
    names = list(checked_specs(cloud.specs_dir))
    with scoped_env(cloud.env()):
        from tollgate.cloud import Cloud
        from tollgate.cloud import run as cloudrun
        from tollgate.settings import Settings

        return cloudrun.ensure_services(Cloud(Settings.from_env()), names)


def latest_export(home: Path) -> Path | None:
    """The newest Firestore export under ``home`` (what a start imports), if any."""
    found = sorted((home / "firestore-export").glob("**/*.overall_export_metadata"))
    return found[-1] if found else None


def export_firestore(host: str, project: str, target: Path) -> None:
    """Export the Firestore emulator's data into ``target`` (replaced only once the new export is whole), which
    the next start imports."""
    fresh = target.with_name(target.name + ".new")
    shutil.rmtree(fresh, ignore_errors=True)
    fresh.mkdir(parents=True)
    response = requests.post(f"http://{host}/emulator/v1/projects/{project}:export",
                             json={"database": f"projects/{project}/databases/(default)",
                                   "export_directory": str(fresh)}, timeout=120)
    response.raise_for_status()
    old = target.with_name(target.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    fresh.rename(target)
    shutil.rmtree(old, ignore_errors=True)
