"""Tollgate: the code every function, job, service and the CLI share.

Pure logic (spec, validation, training, evaluation, policy) never imports a Google
client; cloud access lives in ``tollgate.cloud``; ``tollgate.chain`` (functions) and ``tollgate.jobs`` (jobs)
wire the two.
"""

__version__ = "0.1.0"
