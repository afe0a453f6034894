"""Function `launch`: a stage's event starts the next stage's Cloud Run job (env JOB names it)."""

import os

import functions_framework

from tollgate import chain, events, runtime


def _launch(message: events.Message) -> str:
    job = os.environ["JOB"]
    payload = events.stage_payload(message)
    return chain.launch(runtime.cloud(), runtime.state(), payload["run_id"], job)


@functions_framework.cloud_event
def on_stage_done(cloud_event):
    runtime.handle_event(cloud_event, _launch)
