"""Tollgate: the code every function, job, service and the CLI share.

Pure logic (spec, validation, training, evaluation, policy) never imports a Google
client; cloud access lives in ``tollgate.cloud``; ``tollgate.chain`` (functions) and ``tollgate.jobs`` (jobs)
wire the two.
"""

__version__ = "0.1.0"


def __getattr__(name: str):  # noqa: ANN202 -- `from tollgate import Client`, imported only when asked for
    if name in ("Client", "ClientError"):
        from tollgate import client

        return getattr(client, name)
    raise AttributeError(f"module 'tollgate' has no attribute {name!r}")
