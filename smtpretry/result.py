"""What a send did for each recipient: :class:`Outcome` and :class:`SendResult`."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from .classify import Classification
from .decide import Attempt
from .reply import EnhancedCode, Reply, TransportFailure

__all__ = ["Outcome", "SendResult", "Status"]


class Status(StrEnum):
    """Where a recipient ended: every recipient ends in exactly one."""

    DELIVERED = "delivered"
    DEFERRED = "deferred"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Outcome:
    """One recipient's end: its status, the last reply (or transport failure)
    and its classification, the attempts made, and for a deferred recipient
    when to come back (``next_attempt_at``, epoch seconds).

    ``possible_duplicate`` is set when a connection was lost after the final
    dot for this recipient (RFC 1047): the server may hold a copy already.

    .. versionadded:: 0.1
    """

    recipient: str
    status: Status
    classification: Classification
    history: tuple[Attempt, ...]
    next_attempt_at: float | None = None
    possible_duplicate: bool = False
    expired: bool = False

    @property
    def attempts(self) -> int:
        return len(self.history)

    @property
    def assumed(self) -> bool:
        """Delivered by assumption, not by a reply: the connection was lost
        after the final dot and the policy is at-most-once (RFC 1047), or a
        queue runner found the entry interrupted. The server may not have it.

        .. versionadded:: 0.4
        """
        return self.status is Status.DELIVERED and self.failure is not None

    @property
    def reply(self) -> Reply | None:
        """The last reply from the server, or ``None`` if the last attempt got none."""
        last = self.history[-1].evidence if self.history else None
        return last if isinstance(last, Reply) else None

    @property
    def failure(self) -> TransportFailure | None:
        last = self.history[-1].evidence if self.history else None
        return last if isinstance(last, TransportFailure) else None

    @property
    def code(self) -> int | None:
        return self.reply.code if self.reply else None

    @property
    def enhanced(self) -> EnhancedCode | None:
        return self.reply.enhanced if self.reply else None

    @property
    def text(self) -> str:
        if self.reply is not None:
            return self.reply.text
        return str(self.failure) if self.failure else ""

    def describe(self) -> str:
        """One line for people: ``"deferred: 452 4.2.2 Mailbox full (mailbox_full)"``."""
        evidence = str(self.reply) if self.reply else str(self.failure or "")
        return f"{self.status.value}: {evidence} ({self.classification.category.value})"


@dataclass(frozen=True, slots=True)
class SendResult:
    """What one send did, per recipient. Every recipient given to the send is
    in ``outcomes`` exactly once.

    .. versionadded:: 0.1
    """

    message_id: str | None
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    queue_id: str | None = None
    """The queue entry holding the deferred recipients, when the Mailer has a queue
    (the first of ``queue_ids``)."""
    queue_ids: tuple[str, ...] = ()
    """Every queue entry this send wrote: one per destination, so a
    :class:`~smtpretry.Router` send to several domains may write several.

    .. versionadded:: 0.5
    """

    def __post_init__(self) -> None:
        if self.queue_id is not None and not self.queue_ids:
            object.__setattr__(self, "queue_ids", (self.queue_id,))

    def _with(self, status: Status) -> dict[str, Outcome]:
        return {r: o for r, o in self.outcomes.items() if o.status is status}

    @property
    def delivered(self) -> list[str]:
        return [r for r, o in self.outcomes.items() if o.status is Status.DELIVERED]

    @property
    def deferred(self) -> dict[str, Outcome]:
        return self._with(Status.DEFERRED)

    @property
    def failed(self) -> dict[str, Outcome]:
        return self._with(Status.FAILED)

    @property
    def possible_duplicates(self) -> list[str]:
        return [r for r, o in self.outcomes.items() if o.possible_duplicate]

    @property
    def ok(self) -> bool:
        """True when every recipient was delivered."""
        return all(o.status is Status.DELIVERED for o in self.outcomes.values())
