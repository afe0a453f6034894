"""Cloud Run: start jobs, read executions, roll the predictor service to a model version.

The same calls reach Cloud Run on GCP and the local Cloud Run Admin API (localcloud/).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from google.api_core.exceptions import NotFound

from tollgate.cloud.clients import Cloud

if TYPE_CHECKING:
    from google.cloud import run_v2


def run_job(cloud: Cloud, job: str, env: dict[str, str], task_count: int | None = None) -> str:
    """Start one execution of a job with container env overrides; returns the execution name.

    Does not wait for the execution: functions must stay quick (long work belongs in jobs).
    """
    from google.cloud import run_v2  # ~0.5 s to import: only the callers that start or deploy pay it

    overrides = run_v2.RunJobRequest.Overrides(
        container_overrides=[run_v2.RunJobRequest.Overrides.ContainerOverride(
            env=[run_v2.EnvVar(name=k, value=v) for k, v in env.items()])],
        task_count=task_count,
    )
    operation = cloud.jobs.run_job(request=run_v2.RunJobRequest(
        name=f"{cloud.location}/jobs/{job}", overrides=overrides))
    return operation.metadata.name


def _state_of(ex: Any) -> str:
    if ex.failed_count or ex.cancelled_count:
        return "failed"
    if ex.completion_time and ex.succeeded_count >= max(ex.task_count, 1):
        return "succeeded"
    return "running"


def execution_state(cloud: Cloud, execution: str) -> str:
    """"running", "succeeded" or "failed" for an execution name."""
    return _state_of(cloud.executions.get_execution(name=execution))


def describe_execution(cloud: Cloud, execution: str) -> dict[str, Any] | None:
    """An execution's state ("running", "succeeded", "failed"), start and end (aware datetimes or None) and
    retries so far; None when Cloud Run does not know it (deleted, or a local cloud that restarted)."""
    try:
        ex = cloud.executions.get_execution(name=execution)
    except NotFound:
        return None
    from google.cloud import run_v2

    failed = [c.message for c in ex.conditions if c.type_ == "Completed" and c.message
              and c.state == run_v2.Condition.State.CONDITION_FAILED]
    return {"state": _state_of(ex), "started": _when(ex.start_time) or _when(ex.create_time),
            "completed": _when(ex.completion_time), "retried": int(ex.retried_count),
            "failed_tasks": int(ex.failed_count), "message": failed[0] if failed else None}


def memory_exceeded(message: str | None) -> bool:
    """Whether an execution failed because a task passed its memory limit (Cloud Run's own words)."""
    return bool(message) and "Memory limit of" in message and "exceeded" in message


def job_limits(cloud: Cloud, job: str) -> tuple[float, int]:
    """(task timeout in seconds, max retries) as the job is deployed: how long an execution may run."""
    template = cloud.jobs.get_job(name=f"{cloud.location}/jobs/{job}").template.template
    timeout = template.timeout.total_seconds() if hasattr(template.timeout, "total_seconds") else 600.0
    return float(timeout or 600.0), int(template.max_retries)


def _when(value: Any) -> Any:
    """A proto timestamp as an aware datetime (None when unset)."""
    import datetime as dt

    if value is None or not isinstance(value, dt.datetime) or value.timestamp() <= 0:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def service_id(dataset: str) -> str:
    """The dataset's predictor service: ``predictor-<dataset>`` with ``_`` as ``-``. Dataset names
    (tollgate.spec.DATASET_NAME) map one-to-one onto valid Cloud Run service ids this way."""
    from tollgate.spec import check_dataset_name

    return "predictor-" + check_dataset_name(dataset).replace("_", "-")


def revision_id(dataset: str, version: int) -> str:
    return f"{service_id(dataset)}-v{version}"


def get_service(cloud: Cloud, dataset: str) -> run_v2.Service | None:
    try:
        return cloud.services.get_service(name=f"{cloud.location}/services/{service_id(dataset)}")
    except NotFound:
        return None


def revision_exists(cloud: Cloud, dataset: str, version: int) -> bool:
    try:
        cloud.revisions.get_revision(
            name=f"{cloud.location}/services/{service_id(dataset)}/revisions/{revision_id(dataset, version)}")
        return True
    except NotFound:
        return False


def create_service(cloud: Cloud, dataset: str, env: dict[str, str], revision: str | None = None,
                   traffic: list[run_v2.TrafficTarget] | None = None, sizing: dict[str, Any] | None = None) -> Any:
    """Create the dataset's predictor service from the deployment's settings (image, service account,
    a startup probe on the health route; not public: invokers are granted by name). Returns the
    long-running operation.

    Without a model pinned in ``env`` this is the service terraform's modules/predictor (and
    `tollgate up`) makes before the first promotion: one auto-named revision, min instances 0,
    healthy and answering 503 until a promotion takes it over."""
    from google.cloud import run_v2

    pinned = "MODEL_VERSION" in env
    env = {"DATASET": dataset, "GOOGLE_CLOUD_PROJECT": cloud.settings.project,
           "TOLLGATE_BUCKET": cloud.settings.bucket, **env}
    probe = run_v2.Probe(http_get=run_v2.HTTPGetAction(path="/health"), period_seconds=2, failure_threshold=60)
    variables = [run_v2.EnvVar(name=k, value=v) for k, v in env.items()]
    if cloud.settings.feedback_key_secret:   # as terraform's modules/predictor gives it (locally: inherited)
        variables.append(run_v2.EnvVar(name="TOLLGATE_FEEDBACK_KEY", value_source=run_v2.EnvVarSource(
            secret_key_ref=run_v2.SecretKeySelector(secret=cloud.settings.feedback_key_secret, version="latest"))))
    container = run_v2.Container(image=cloud.settings.predictor_image, startup_probe=probe, env=variables)
    template = run_v2.RevisionTemplate(revision=revision or "", containers=[container], scaling=run_v2.RevisionScaling(
        min_instance_count=cloud.settings.predictor_min_instances if pinned else 0))
    if cloud.settings.predictor_service_account:
        template.service_account = cloud.settings.predictor_service_account
    if sizing:
        _size(template, sizing)
    return cloud.services.create_service(parent=cloud.location, service_id=service_id(dataset),
                                         service=run_v2.Service(template=template, traffic=traffic or []))


def ensure_services(cloud: Cloud, datasets: list[str], timeout: float = 120) -> list[str]:
    """Make the model-less service of each dataset that has none (what terraform does on GCP);
    returns the datasets whose service was created."""
    created = [(d, create_service(cloud, d, {})) for d in datasets if get_service(cloud, d) is None]
    for _, op in created:
        op.result(timeout=timeout)
    return [d for d, _ in created]


def _size(template: Any, sizing: dict[str, Any]) -> None:
    """A revision template given the spec's size and scaling (``deployment`` in the spec)."""
    container = template.containers[0]
    limits = dict(container.resources.limits) if container.resources else {}
    limits.update({k: str(sizing[k]) for k in ("cpu", "memory") if k in sizing})
    if limits:
        container.resources.limits.update(limits)
    if "min_instances" in sizing:
        template.scaling.min_instance_count = int(sizing["min_instances"])
    if "max_instances" in sizing:
        template.scaling.max_instance_count = int(sizing["max_instances"])
    if "concurrency" in sizing:
        template.max_instance_request_concurrency = int(sizing["concurrency"])


def set_traffic(cloud: Cloud, dataset: str, targets: list[tuple[int, int]], env: dict[str, str],
                timeout: float = 300, sizing: dict[str, Any] | None = None) -> dict[str, Any]:
    """Make the dataset's predictor serve ``targets`` — (model version, percent) pairs adding up
    to 100 — each version from its own revision, tagged ``v<version>``.

    Idempotent and convergent: a revision is named after its version, so a retried call finds the
    revisions it created. At most one target may lack a revision (the version being promoted);
    it becomes the new template, pinned to its version through the environment, from this
    deployment's image and min instances (``TOLLGATE_PREDICTOR_IMAGE``, ``…_MIN_INSTANCES``: a
    new release reaches the predictor with its next model). Everything else the template holds
    (probes, resources, service account: terraform's) is kept; the revision terraform created
    before any model existed simply loses its traffic. Moving traffic between existing
    revisions (canary promote/abort, rollback) creates nothing.
    """
    from google.cloud import run_v2

    if sum(p for _, p in targets) != 100 or any(p <= 0 for _, p in targets):
        raise ValueError(f"traffic targets must be positive and add up to 100: {targets}")
    service = get_service(cloud, dataset)
    missing = [v for v, _ in targets if service is None or not revision_exists(cloud, dataset, v)]
    if len(missing) > 1:
        raise ValueError(f"versions {missing} have no revision yet; deploy them one at a time")
    pinned = {**env, "DATASET": dataset, "MODEL_VERSION": str(missing[0])} if missing else {}
    traffic = [run_v2.TrafficTarget(type_=run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION,
                                    revision=revision_id(dataset, v), percent=p, tag=f"v{v}") for v, p in targets]
    if service is None:   # a dataset whose service terraform (or `tollgate up`) did not make
        op = create_service(cloud, dataset, pinned, revision_id(dataset, missing[0]), traffic, sizing)
    else:
        if missing:
            container = service.template.containers[0]
            kept = [e for e in container.env if e.name not in pinned]
            del container.env[:]
            container.env.extend(kept + [run_v2.EnvVar(name=k, value=v) for k, v in pinned.items()])
            container.image = cloud.settings.predictor_image
            service.template.scaling.min_instance_count = cloud.settings.predictor_min_instances
            service.template.revision = revision_id(dataset, missing[0])
            if sizing:
                _size(service.template, sizing)
        del service.traffic[:]
        service.traffic.extend(traffic)
        op = cloud.services.update_service(service=service)
    result = op.result(timeout=timeout)
    return {"service": result.name, "uri": result.uri,
            "traffic": [{"version": v, "percent": p, "revision": revision_id(dataset, v)} for v, p in targets]}
