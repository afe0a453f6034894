"""Cloud Run job `monitor`: one monitoring tick, started by the launch-monitor function on each monitor-tick
(DATASETS, comma-separated, limits it).

The job's code is `tollgate.jobs.monitor.run` (what tests and the CLI call); this entry point only reads the
environment and maps the outcome to an exit code (tollgate.jobs.entry).
"""

from tollgate.jobs import job_main

if __name__ == "__main__":
    job_main("monitor")
