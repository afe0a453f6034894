"""A local Cloud Run job execution: its tasks as processes in parallel, each task's attempts retried as Cloud Run
retries them, each attempt held to the job's memory limit (localcloud.memory) and its timeout."""

from __future__ import annotations

import os
import secrets
import subprocess
import threading
from pathlib import Path
from typing import Any

from localcloud import memory
from localcloud.operations import EXECUTION_TYPE, Host, Operation, now
from localcloud.processes import ROOT, resolve, tail
from tollgate import topology as topo


class Execution:
    """One execution: its tasks run in parallel, each task's attempts one after the other, as Cloud Run runs
    them: a task that exits non-zero, or outlives the job's timeout (SIGTERM, then SIGKILL 10 s later), is
    started again with CLOUD_RUN_TASK_ATTEMPT + 1 until the job's max_retries are used up."""

    def __init__(self, runtime: Host, job: topo.Job, env: dict[str, str], task_count: int,
                 timeout: float) -> None:
        self.runtime = runtime
        self.job = job
        self.id = f"{job.name}-{secrets.token_hex(3)}"
        self.name = f"{runtime.parent}/jobs/{job.name}/executions/{self.id}"
        self.task_count = task_count
        self.timeout = timeout
        self.env = env
        self.create_time = now()
        self.start_time: str | None = None
        self.completion_time: str | None = None
        self.exit_codes: dict[int, int] = {}
        self.memory_exceeded: dict[int, str] = {}   # task → Cloud Run's message, for a task stopped over its limit
        self.memory_limit = runtime.memory_limit(job.name, job.memory)
        self.retried = 0
        self.procs: list[subprocess.Popen[bytes]] = []   # every attempt's process (stop_all ends the live ones)
        self.failure: str | None = None
        self.operation = Operation(runtime.parent, EXECUTION_TYPE, {})
        self.operation.metadata = self.to_json()

    def log_path(self, task: int) -> Path:
        return self.runtime.home / "logs" / "jobs" / f"{self.id}-task{task}.log"

    def start(self) -> None:
        self.start_time = now()
        threads = [threading.Thread(target=self._run_task, args=(task,), daemon=True, name=f"{self.id}-task{task}")
                   for task in range(self.task_count)]
        for thread in threads:
            thread.start()
        threading.Thread(target=self._finish, args=(threads,), daemon=True, name=f"exec-{self.id}").start()

    def _attempt(self, task: int, attempt: int) -> int:
        env = {**os.environ, **self.env, "CLOUD_RUN_JOB": self.job.name, "CLOUD_RUN_EXECUTION": self.id,
               "CLOUD_RUN_TASK_INDEX": str(task), "CLOUD_RUN_TASK_COUNT": str(self.task_count),
               "CLOUD_RUN_TASK_ATTEMPT": str(attempt), "TOLLGATE_MAX_ATTEMPTS": str(self.job.max_attempts),
               "TOLLGATE_MEMORY_LIMIT": str(self.memory_limit)}
        path = self.log_path(task)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("ab") as log:
            proc = subprocess.Popen(resolve(self.job.command), cwd=ROOT, env=env, stdout=log,
                                    stderr=subprocess.STDOUT)
        self.procs.append(proc)
        watchdog = memory.Watchdog(proc.pid, self.memory_limit)
        try:
            code = proc.wait(timeout=self.timeout)
            watchdog.stop()
            if watchdog.exceeded:   # as Cloud Run stops a container over its limit: SIGKILL, and says so
                self.memory_exceeded[task] = watchdog.message
                with path.open("a") as log:
                    log.write(f"\n[local cloud run] attempt {attempt} stopped: {watchdog.message}\n")
                return 137
            with path.open("a") as log:   # what Cloud Run's metrics would show: the attempt's peak memory
                log.write(f"\n[local cloud run] attempt {attempt} peak memory {watchdog.peak // 2**20} MiB "
                          f"(limit {self.memory_limit // 2**20} MiB)\n")
            return code
        except subprocess.TimeoutExpired:
            watchdog.stop()
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            with path.open("a") as log:
                log.write(f"\n[local cloud run] attempt {attempt} killed after the task timeout of "
                          f"{self.timeout:.0f}s\n")
            return proc.returncode if proc.returncode not in (0, None) else -15

    def _run_task(self, task: int) -> None:
        for attempt in range(self.job.max_attempts):
            code = self._attempt(task, attempt)
            if code == 0 or attempt + 1 == self.job.max_attempts:
                break
            self.retried += 1
            with self.log_path(task).open("a") as log:
                log.write(f"\n[local cloud run] attempt {attempt} exited with {code}; retrying "
                          f"({attempt + 1} of max_retries {self.job.max_retries})\n")
        self.exit_codes[task] = code

    def _finish(self, threads: list[threading.Thread]) -> None:
        for thread in threads:
            thread.join()
        self.completion_time = now()
        failed = [t for t, c in self.exit_codes.items() if c != 0]
        if failed:
            task = failed[0]
            message = (f"Task {self.id}-task{task} failed with exit code {self.exit_codes[task]}"
                       + (f": {self.memory_exceeded[task]}" if task in self.memory_exceeded else "")
                       + f". Log tail:\n{tail(self.log_path(task))}")
            self.failure = message
            self.operation.finish(error=(9, message))
        else:
            self.operation.finish(self.to_json())
        self.operation.metadata = self.to_json()

    def to_json(self) -> dict[str, Any]:
        succeeded = sum(1 for c in self.exit_codes.values() if c == 0)
        failed = len(self.exit_codes) - succeeded
        out: dict[str, Any] = {
            "name": self.name, "uid": self.id, "job": self.job.name, "createTime": self.create_time,
            "taskCount": self.task_count, "parallelism": self.task_count,
            "runningCount": self.task_count - len(self.exit_codes) if self.start_time else 0,
            "succeededCount": succeeded, "failedCount": failed, "retriedCount": self.retried,
            "logUri": f"file://{self.log_path(0)}",
            "template": {"containers": [{"image": self.job.name,
                                         "env": [{"name": k, "value": v} for k, v in self.env.items()]}]},
        }
        if self.start_time:
            out["startTime"] = self.start_time
        if self.completion_time:
            out["completionTime"] = self.completion_time
            # Completed: CONDITION_FAILED (3) with why, as Cloud Run reports a failed execution; else SUCCEEDED (4)
            out["conditions"] = [{"type": "Completed", "state": 3 if self.failure else 4,
                                  "message": (self.failure or "").split(". Log tail:")[0],
                                  "lastTransitionTime": self.completion_time}]
        return out
