"""Cloud Run job `trainer`: trains one run's challenger (RUN_ID in the environment), then publishes model-trained.

The job's code is `tollgate.jobs.trainer.run` (what tests and the CLI call); this entry point only reads the
environment and maps the outcome to an exit code (tollgate.jobs.entry).
"""

from tollgate.jobs import job_main

if __name__ == "__main__":
    job_main("trainer")
