"""RQ workers whose command listener wakes every second instead of every minute.

RQ's worker listens for commands (stop, kill-horse) on a pubsub thread that reads with a
60 s timeout while holding the pubsub connection's lock. Unsubscribing at shutdown needs that
lock, so a worker that is told to stop, or a burst worker that has finished, could wait up to
a minute before it exits. `rq worker -w worker.rqworker.MailWorker` (the Procfile) and the
tests' burst workers use these classes; the jobs they run are the same.
"""

from __future__ import annotations

from rq import SimpleWorker, Worker

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


class MailWorker(_QuickCommands, Worker):
    """The production worker: forks a work horse per job."""


class MailSimpleWorker(_QuickCommands, SimpleWorker):
    """Runs jobs in its own process (tests, burst runs)."""
