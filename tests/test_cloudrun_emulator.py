"""The local Cloud Run Admin API through the real google-cloud-run client."""

import pytest
from google.api_core.exceptions import FailedPrecondition, NotFound

from tollgate.cloud import run as cloudrun

pytestmark = pytest.mark.emulator


def test_a_job_that_exits_non_zero_is_a_failed_execution(cloud, unique):
    # The validator exits 1 for a run that does not exist: a real failure, not a staged one.
    from google.cloud import run_v2

    request = run_v2.RunJobRequest(
        name=f"{cloud.location}/jobs/validator",
        overrides=run_v2.RunJobRequest.Overrides(
            container_overrides=[run_v2.RunJobRequest.Overrides.ContainerOverride(
                env=[run_v2.EnvVar(name="RUN_ID", value=f"run-missing-{unique}")])],
            task_count=2))
    operation = cloud.jobs.run_job(request=request)
    execution_name = operation.metadata.name
    assert execution_name.startswith(f"{cloud.location}/jobs/validator/executions/")
    with pytest.raises(FailedPrecondition, match="exit code 1"):
        operation.result(timeout=120)
    execution = cloud.executions.get_execution(name=execution_name)
    assert (execution.task_count, execution.failed_count, execution.succeeded_count) == (2, 2, 0)
    assert cloudrun.execution_state(cloud, execution_name) == "failed"
    env = {e.name: e.value for e in execution.template.containers[0].env}
    assert env["RUN_ID"] == f"run-missing-{unique}"


def test_unknown_job_and_service_are_not_found(cloud):
    with pytest.raises(NotFound):
        cloudrun.run_job(cloud, "no-such-job", {})
    assert cloudrun.get_service(cloud, "no_such_dataset") is None


def test_a_traffic_only_update_does_not_wait_on_a_template_revision_that_cannot_start(cloud, unique):
    """A promotion whose revision never turns ready (its model will not load) leaves the template naming it; moving
    traffic back to a revision that works changes no template, so it must not wait on that one (Cloud Run makes
    no revision for an unchanged template)."""
    from google.cloud import run_v2

    dataset = f"tmpl_{unique}"
    cloudrun.create_service(cloud, dataset, {}).result(timeout=120)   # model-less: healthy, answers 503
    working = cloudrun.get_service(cloud, dataset).latest_ready_revision.rsplit("/", 1)[-1]
    with pytest.raises(FailedPrecondition, match="exited|not ready"):
        cloudrun.set_traffic(cloud, dataset, [(99, 100)], {}, timeout=120)   # v99 is registered nowhere
    service = cloudrun.get_service(cloud, dataset)
    assert service.template.revision == cloudrun.revision_id(dataset, 99)
    del service.traffic[:]
    service.traffic.append(run_v2.TrafficTarget(
        type_=run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION, revision=working,
        percent=100))
    moved = cloud.services.update_service(service=service).result(timeout=60)
    assert [(t.revision, t.percent) for t in moved.traffic] == [(working, 100)]
