"""Function `decider`: apply the decision policy to an evaluated run, record it, deploy on promotion."""

import functions_framework

from tollgate import chain, events, runtime


def _decide(message: events.Message) -> str:
    payload = events.stage_payload(message)
    return chain.decide(runtime.cloud(), runtime.state(), payload["run_id"])


@functions_framework.cloud_event
def on_model_evaluated(cloud_event):
    runtime.handle_event(cloud_event, _decide)
