"""Function `ingest`: a GCS OBJECT_FINALIZE notification under incoming/<dataset>/ becomes a run."""

import functions_framework

from tollgate import chain, events, runtime


def _ingest(message: events.Message) -> str:
    obj = events.object_finalized(message)
    if obj is None:
        return "ignored"
    return chain.ingest(runtime.cloud(), runtime.state(), obj)


@functions_framework.cloud_event
def on_object_finalized(cloud_event):
    runtime.handle_event(cloud_event, _ingest)
