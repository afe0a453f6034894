"""Cloud Run job `evaluator`: scores one run's challenger and champion (RUN_ID in the environment), then
publishes model-evaluated.

The job's code is `tollgate.jobs.evaluator.run` (what tests and the CLI call); this entry point only reads the
environment and maps the outcome to an exit code (tollgate.jobs.entry).
"""

from tollgate.jobs import job_main

if __name__ == "__main__":
    job_main("evaluator")
