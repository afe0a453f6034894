"""Cloud Run job `validator`: validates one run (RUN_ID in the environment), then publishes its event.

Importable: `tollgate.jobs.validate(cloud, state, run_id)` is what tests call.
"""

from tollgate.jobs import job_main

if __name__ == "__main__":
    job_main("validate")
