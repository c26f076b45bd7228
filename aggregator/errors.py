"""One exception root; every error carries where it happened."""

from __future__ import annotations

from aggregator.model import Problem


class AggregatorError(Exception):
    """Root of the errors this service raises on purpose."""


class ConfigError(AggregatorError):
    """sources.yaml or the environment is wrong; the message names file, line and field."""


class FetchError(AggregatorError):
    """A source could not be fetched."""

    def __init__(self, url: str, message: str) -> None:
        super().__init__(f"{message} ({url})")
        self.url = url
        self.message = message


class ParseError(AggregatorError):
    """A fetched body could not be read as a feed at all: `problem` says why (with a code),
    `message` in its English words."""

    def __init__(self, url: str, message: str | Problem) -> None:
        self.problem = message if isinstance(message, Problem) else Problem.text(message)
        self.message = self.problem.words
        super().__init__(f"{self.message} ({url})")
        self.url = url

    def __reduce__(self):  # raised in a worker process, pickled back whole
        return type(self), (self.url, self.problem)


class Refused(AggregatorError):
    """An address a fetch will not go to (a /check of a stranger's URL must stay outside our
    network); `problem` says why (with a code), `message` in its English words."""

    def __init__(self, message: str | Problem) -> None:
        self.problem = message if isinstance(message, Problem) else Problem.text(message)
        self.message = self.problem.words
        super().__init__(self.message)


class RemovalRefused(AggregatorError):
    """A configuration that would unpublish most sources at once (a missing config mount, a
    wrong file): refused unless the operator says it is meant (`--allow-removals`)."""


class Deposed(AggregatorError):
    """A write of the scheduler's work refused: this process no longer holds the scheduler's
    lease (its fencing token is not the lease's epoch), so another may be writing. Nothing
    of the refused transaction is written; the work stops (lease.Candidate steps down)."""

    def __init__(self, token: int | None, epoch: int | None = None) -> None:
        why = (
            "this process let go of the scheduler's lease"
            if token is None
            else f"its token {token} is not the lease's epoch {epoch}: another process took it"
        )
        super().__init__(f"not written: {why}")
        self.token = token
        self.epoch = epoch
