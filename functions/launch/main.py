"""Function `launch`: a stage's event starts the next stage's Cloud Run job (env JOB names it);
`on_tick`: a scheduled tick starts the job with no run (the monitor), limited to the tick's
``datasets`` when it names them."""

import os

import functions_framework

from tollgate import chain, events, runtime
from tollgate.cloud import run as cloudrun


def _launch(message: events.Message) -> str:
    job = os.environ["JOB"]
    payload = events.stage_payload(message)
    return chain.launch(runtime.cloud(), runtime.state(), payload["run_id"], job)


def _tick(message: events.Message) -> str:
    # A redelivered tick may start a second execution: the monitor is safe to repeat (stored batches
    # are skipped, alerts and retraining have cool-downs, canary moves are transactions).
    # A tick may name its datasets ({"datasets": [...]}); by default the monitor judges every one.
    try:
        datasets = message.json().get("datasets") or []
    except events.MalformedEvent:
        datasets = []
    env = {"TICK": message.message_id}
    if isinstance(datasets, list) and datasets:
        env["DATASETS"] = ",".join(str(d) for d in datasets)
    execution = cloudrun.run_job(runtime.cloud(), os.environ["JOB"], env)
    return f"started {execution.rsplit('/', 1)[-1]}"


@functions_framework.cloud_event
def on_stage_done(cloud_event):
    runtime.handle_event(cloud_event, _launch)


@functions_framework.cloud_event
def on_tick(cloud_event):
    runtime.handle_event(cloud_event, _tick)
