"""The Cloud Run jobs, one module each: the run's steps `validator`, `trainer` and `evaluator`, and the scheduled
`monitor`; what the steps share (`common`) and the entry point of every job (`entry.job_main`)."""

from tollgate.jobs.entry import job_main

__all__ = ["job_main"]
