"""Function `tracking` (topic model-decided): mirror the decided run, its registered version and the serving
aliases into the dataset's MLflow (tollgate/tracking.py). Off unless a spec or the deployment names an MLflow;
a failed sync is recorded for the reconciler to retry and the event is acknowledged."""

import functions_framework

from tollgate import events, runtime, tracking
from tollgate import spec as specs


def _mirror(message: events.Message) -> str:
    payload = message.json()
    try:
        dataset = specs.check_dataset_name(payload.get("dataset"))
    except specs.SpecError as exc:
        raise events.MalformedEvent(f"the model-decided event names no dataset: {exc}") from None
    run_id = payload.get("run_id")
    result = tracking.sync(runtime.cloud(), runtime.state(), dataset, [run_id] if isinstance(run_id, str) else [])
    return result["status"]


@functions_framework.cloud_event
def on_model_decided(cloud_event):
    runtime.handle_event(cloud_event, _mirror)
