"""Function `reconciler` (topic reconcile-tick, on a schedule): repair what a crash left in flight
(tollgate/reconciler.py): outbox events, runs whose job execution failed, vanished or outlived its timeout,
runs waiting for a lost event, deployments left pending."""

import functions_framework

from tollgate import events, reconciler, runtime


def _reconcile(message: events.Message) -> str:
    report = reconciler.run(runtime.cloud(), runtime.state())
    return f"{len(report['outbox'])} events, {len(report['runs'])} runs, {len(report['deployments'])} deployments"


@functions_framework.cloud_event
def on_reconcile_tick(cloud_event):
    runtime.handle_event(cloud_event, _reconcile)
