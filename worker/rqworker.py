"""RQ workers whose command listener wakes every second, and that run polls without forking.

RQ's worker listens for commands (stop, kill-horse) on a pubsub thread that reads with a
60 s timeout while holding the pubsub connection's lock. Unsubscribing at shutdown needs that
lock, so a worker that is told to stop, or a burst worker that has finished, could wait up to
a minute before it exits. `rq worker -w worker.rqworker.MailWorker` (the Procfile) and the
tests' burst workers use these classes; the jobs they run are the same.

Forking a work horse costs more than polling an unchanged mailbox (a new process, a new
database engine and TLS context, then tearing it all down): MailWorker runs the short jobs
in IN_PROCESS in its own process, as SimpleWorker does, and forks for everything else (a
first fetch, sends). RQ's job timeout still applies: perform_job arms SIGALRM either way.
"""

from __future__ import annotations

from rq import SimpleWorker, Worker
from rq.job import Job
from rq.queue import Queue
from rq.worker import WorkerStatus

COMMAND_POLL_SECONDS = 1.0


class _QuickCommands:
    def subscribe(self) -> None:
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(
            sleep_time=COMMAND_POLL_SECONDS,
            daemon=True,
            exception_handler=self._pubsub_exception_handler,
        )


# Polls of mailboxes whose first fetch is done, and the scheduler's ticks: short, frequent.
IN_PROCESS = frozenset(
    {
        "worker.jobs.poll_mailboxes",
        "worker.jobs.schedule_fetches",
        "worker.jobs.sweep",
        "worker.jobs.dispatch_outbox",
        "worker.jobs.expire_held_messages",
    }
)


class MailWorker(_QuickCommands, Worker):
    """The production worker: forks a work horse per job, except for the jobs in IN_PROCESS."""

    def execute_job(self, job: Job, queue: Queue) -> None:
        if job.func_name not in IN_PROCESS:
            super().execute_job(job, queue)
            return
        execution = self.prepare_execution(job)
        self.perform_job(job, queue, execution)
        self.set_state(WorkerStatus.IDLE)

    def kill_horse(self, sig=None) -> None:
        # During an in-process job there is no horse: RQ would killpg its own group (pid 0).
        if self.horse_pid:
            super().kill_horse(*([sig] if sig is not None else []))

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        if job.func_name in IN_PROCESS:  # no horse monitor beats meanwhile: cover the whole job
            return SimpleWorker.get_heartbeat_ttl(self, job, working_time)
        return super().get_heartbeat_ttl(job, working_time)


class MailSimpleWorker(_QuickCommands, SimpleWorker):
    """Runs jobs in its own process (tests, burst runs)."""
