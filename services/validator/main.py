"""Cloud Run job `validator`: validates one run's dropped file (RUN_ID in the environment), then publishes
data-validated.

The job's code is `tollgate.jobs.validator.run` (what tests and the CLI call); this entry point only reads the
environment and maps the outcome to an exit code (tollgate.jobs.entry).
"""

from tollgate.jobs import job_main

if __name__ == "__main__":
    job_main("validator")
