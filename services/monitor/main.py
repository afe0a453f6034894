"""Cloud Run job `monitor`: one monitoring tick (started by the `launch-monitor` function on each
`monitor-tick`): drain the prediction log into storage, judge every serving dataset's window, raise
alerts, request retraining, promote or roll back canaries. ``DATASETS`` (comma-separated) limits it.

Importable: `tollgate.monitor.run(cloud, state)` is what `tollgate monitor run` and tests call.
"""

import os
import sys
import traceback

from tollgate import log, monitor
from tollgate.cloud import Cloud
from tollgate.cloud.state import State
from tollgate.settings import Settings

if __name__ == "__main__":
    try:
        cloud = Cloud(Settings.from_env())
        datasets = [d for d in os.environ.get("DATASETS", "").split(",") if d] or None
        result = monitor.run(cloud, State(cloud.firestore), datasets)
        log.info("monitor finished", drained=result["drained"], datasets=sorted(result["datasets"]))
    except Exception as exc:
        log.error(f"monitor failed: {exc}", stack=traceback.format_exc())
        sys.exit(1)
