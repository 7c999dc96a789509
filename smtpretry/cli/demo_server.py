"""An embedded SMTP server that throttles like an ISP, for ``smtpretry demo``.

:class:`DemoServer` runs aiosmtpd on 127.0.0.1 in the running event loop. It
takes at most ``max_connections`` connections at once and answers any more
with ``421 4.7.0 Too many concurrent SMTP connections ...`` before closing
them, the way large mailbox providers do. Some recipients are scripted by the
local part of their address:

========== ================================================================
``full*``  ``422 4.2.2 The recipient's mailbox is over its storage limit``
``big*``   ``422 4.3.4 Message exceeds the recipient's size limit``
``unknown*`` ``550 5.1.1 User unknown``
others     accepted
========== ================================================================

It counts the copies each recipient received, the most sessions open at once
and the connections it refused, so the demo can check its figures at the
server rather than trust the client.

aiosmtpd quirks this module works around (aiosmtpd 1.4.x):

- aiosmtpd writes the 220 greeting itself, before any hook runs; refusing at
  connect time means replacing the first reply in ``push()``.
- A 421 returned by a hook is only written; aiosmtpd never closes the
  connection for it, so we close the transport once the reply is written.
- A ``handle_RCPT`` hook replaces aiosmtpd's own bookkeeping: the hook appends
  accepted recipients to the envelope itself.
- Without ``hostname=`` aiosmtpd calls ``socket.getfqdn()`` per connection,
  which can take seconds when DNS is slow.

.. versionadded:: 0.1
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any, Self

from aiosmtpd.smtp import SMTP, Envelope, Session

__all__ = ["DemoServer", "R421_TOO_MANY", "R422_OVER_QUOTA", "R422_TOO_LARGE", "R550_UNKNOWN"]

R421_TOO_MANY = (
    "421 4.7.0 Too many concurrent SMTP connections from this IP address; please try again later"
)
R422_OVER_QUOTA = "422 4.2.2 The recipient's mailbox is over its storage limit"
R422_TOO_LARGE = "422 4.3.4 Message exceeds the recipient's size limit"
R550_UNKNOWN = "550 5.1.1 User unknown"

# Scripted recipients: the first prefix the local part starts with decides the RCPT reply.
_SCRIPTED = (("full", R422_OVER_QUOTA), ("big", R422_TOO_LARGE), ("unknown", R550_UNKNOWN))


def rcpt_reply(address: str) -> str | None:
    """The scripted RCPT reply for ``address``, or None when it is accepted."""
    local = address.rpartition("@")[0].lower()
    for prefix, reply in _SCRIPTED:
        if local.startswith(prefix):
            return reply
    return None


class _Handler:
    """aiosmtpd hooks: scripted RCPT replies, copies counted at DATA."""

    def __init__(self, server: DemoServer) -> None:
        self._server = server

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        reply = rcpt_reply(address)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self._server.delay_s:
            await asyncio.sleep(self._server.delay_s)  # a real server takes a moment to accept
        self._server.copies.update(envelope.rcpt_tos)
        self._server.messages += 1
        return "250 2.0.0 Message accepted for delivery"


class _ThrottlingSMTP(SMTP):
    """One connection: counted at connect; over the limit, its greeting is the 421."""

    def __init__(self, owner: DemoServer, **kwargs: Any) -> None:
        super().__init__(_Handler(owner), **kwargs)
        self._owner = owner
        self._counted = False
        self._refused = False
        self._greeted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self.transport is None  # connection_made runs again after STARTTLS
        super().connection_made(transport)
        if first:
            self._owner._live.add(self)
            self._refused = not self._owner._admit()
            self._counted = not self._refused

    async def push(self, status: Any) -> None:
        if not self._greeted:
            self._greeted = True
            if self._refused:
                await super().push(R421_TOO_MANY)
                if self.transport is not None:
                    self.transport.close()
                return
        await super().push(status)

    def connection_lost(self, error: Exception | None) -> None:
        if self._counted:
            self._counted = False
            self._owner._release()
        self._owner._live.discard(self)
        super().connection_lost(error)


class DemoServer:
    """A local SMTP server that throttles concurrent connections like an ISP.

    ``async with DemoServer(max_connections=3) as server:`` starts it on a free
    port (``server.port``); ``start()`` and ``stop()`` do the same by hand.

    :param max_connections: sessions open at once; more get a 421 at greeting
        and are closed
    :param port: 0 picks a free port
    :param delay_s: seconds the server takes to accept each message (after the
        final dot), as a real one does

    Attributes read after (or during) a run:

    - ``copies``: messages received per recipient address
    - ``messages``: transactions completed (one per DATA accepted)
    - ``max_active``: the most sessions open at once
    - ``peak_connections``: the most connections open at once, refused ones included
    - ``refused``: connections answered with the 421

    .. versionadded:: 0.1
    """

    def __init__(
        self, *, max_connections: int = 3, host: str = "127.0.0.1", port: int = 0, delay_s: float = 0.0
    ) -> None:
        if isinstance(max_connections, bool) or not isinstance(max_connections, int) or max_connections < 1:
            raise ValueError(f"max_connections: expected an integer >= 1, got {max_connections!r}")
        if delay_s < 0:
            raise ValueError(f"delay_s: expected seconds >= 0, got {delay_s!r}")
        self.max_connections = max_connections
        self.delay_s = delay_s
        self.host = host
        self.port = port
        self.copies: Counter[str] = Counter()
        self.messages = 0
        self.active = 0
        self.max_active = 0
        self.connections = 0
        self.peak_connections = 0
        self.refused = 0
        self._server: asyncio.Server | None = None
        self._live: set[_ThrottlingSMTP] = set()

    def _admit(self) -> bool:
        self.connections += 1
        self.peak_connections = max(self.peak_connections, len(self._live))
        if self.active >= self.max_connections:
            self.refused += 1
            return False
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        return True

    def _release(self) -> None:
        self.active -= 1

    async def start(self) -> int:
        """Listen, and return the port."""
        if self._server is not None:
            return self.port
        loop = asyncio.get_running_loop()

        def factory() -> _ThrottlingSMTP:
            # data_size_limit=None: advertise no SIZE; the scripted "big" replies stand for it.
            return _ThrottlingSMTP(self, hostname="localhost", data_size_limit=None, timeout=30, loop=loop)

        self._server = await loop.create_server(factory, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        """Stop listening and close the connections still open."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        # From Python 3.12 wait_closed() waits for open connections: close them first.
        for protocol in list(self._live):
            if protocol.transport is not None:
                protocol.transport.close()
        await server.wait_closed()
        await asyncio.sleep(0)  # let connection_lost() run and cancel the session tasks

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
