"""The router: recipients by domain, each domain by its route, one result.

:class:`Router` has the shape of :class:`~smtpretry.Mailer` (an async
context manager with ``send()`` and ``deliver()``) for messages whose
recipients are at any number of domains. It groups the recipients by domain
(lower case, IDNA), picks each domain's route from the ``[routes]`` table, and
delivers the groups concurrently:

- a **profile route** goes through ``Mailer.from_profile`` (one Mailer per
  profile and limit key; recipients of several domains on one smarthost share
  its transactions);
- an **MX route** resolves the domain (:mod:`smtpretry.mx`), takes the
  settings and the limit key of its MX hosts (``Config.mx_settings``), and
  runs ``Mailer.deliver(envelope, sessions=MXSource(...))``: classification,
  retries, caps and the decision log are the engine's own. The Mailer of an
  MX route is one per limit key, and all the pools of one limit key (one per
  MX host address) share one :class:`~smtpretry.pool.Limiter` (in-process,
  or through Redis when ``backend`` is set), so a provider's cap holds over
  all its hosts and all the domains it serves.

Moving between MX hosts (:class:`MXSource`): each connection is asked of the
addresses in order (preference order, equal preferences shuffled per
delivery, at most :data:`~smtpretry.mx.MAX_ADDRESSES`), an idle connection
to any of them first. A refused connection, a reset before the greeting, a
timeout while opening, or a 421 greeting that is not throttling moves to the
next address (``smtpretry.mx_skipped``), and that address is skipped for
:data:`DOWN_S` seconds unless every address is. A throttling reply (``421
4.7.0 too many connections``) moves on only to an address with another limit
key: the same provider's secondary MX counts connections against the same
sender, and some providers penalise a sender that hops. Since every host of
one domain shares its limit key, a throttled domain backs off and retries
under a lowered cap, as a single host does.

.. versionadded:: 0.5
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import ssl
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from email.message import Message
from typing import TYPE_CHECKING, Any, Self

from . import events
from ._logging import LogContext, Logger, emit, evidence_keys
from .classify import NXDOMAIN_DEFER, RULES, Category, Classification, Rule
from .config import Config, Route, Settings, domain_key
from .decide import RecipientState, classify_evidence
from .endpoint import Endpoint, TLSMode
from .envelope import Envelope, build_envelope
from .errors import ConfigError, MessageError, QueueError
from .limits import DestinationPool, Lease, Limiter, Refusal
from .mailer import Mailer
from .mx import MXHost, MXResolver, Resolution, candidates, for_route, order_hosts, unroutable
from .policy import Limits
from .queue.base import Destination, Queue, entry_from_result, open_queue
from .reply import Evidence, FailureKind, Phase, Reply, TransportFailure
from .result import Outcome, SendResult
from .transport import Session

if TYPE_CHECKING:
    from .runner import QueueRunStats

__all__ = ["DOWN_S", "MXSource", "RoutePlan", "RoutedResend", "Router", "skip_reason"]

DOWN_S = 30.0
"""Seconds an MX address that would not take a connection is tried last."""


def skip_reason(evidence: Evidence, c: Classification) -> str | None:
    """Why a connection refused with ``evidence`` should go to the next MX
    address (pure): ``refused``, ``timeout``, ``disconnected`` (reset before
    the greeting), ``greeting`` (a 421 greeting that is not throttling) or
    ``throttled`` (a throttling greeting: only to another limit key); None
    when it should not (a 554 greeting, a TLS failure: the next host of the
    same domain would most likely say the same, and the engine decides)."""
    if isinstance(evidence, TransportFailure):
        if evidence.kind is FailureKind.REFUSED:
            return "refused"
        if evidence.kind is FailureKind.TIMEOUT and evidence.phase in (
            Phase.CONNECT, Phase.GREETING, Phase.EHLO, Phase.STARTTLS
        ):
            return "timeout"
        if evidence.kind is FailureKind.DISCONNECTED and evidence.phase in (Phase.CONNECT, Phase.GREETING):
            return "disconnected"
        return None
    if evidence.phase is Phase.GREETING and evidence.code == 421:
        return "throttled" if c.category is Category.THROTTLED else "greeting"
    return None


@dataclass(frozen=True, slots=True)
class _Candidate:
    host: str
    address: str
    pool: DestinationPool


class MXSource:
    """The :class:`~smtpretry.pool.SessionSource` of one delivery to one
    domain's MX hosts: the addresses in order, each with its
    :class:`~smtpretry.pool.DestinationPool`; see the module docstring for
    when it moves to the next one.

    ``down`` (address, port) -> monotonic time until which the address is
    tried last; shared by the router's deliveries.

    .. versionadded:: 0.5
    """

    def __init__(
        self, domain: str, candidates: Sequence[_Candidate], *, rules: Sequence[Rule],
        context: LogContext, down: dict[tuple[str, int], float],
    ) -> None:
        self.domain = domain
        self.candidates = list(candidates)
        self._rules = rules
        self._context = context
        self._down = down

    async def lease(self) -> Lease | Refusal:
        for c in self.candidates:  # a connection already open to any of them first
            if c.pool.has_idle():
                return await c.pool.lease()
        now = time.monotonic()
        up = [c for c in self.candidates if self._down.get(self._key(c), 0.0) <= now]
        order = up + [c for c in self.candidates if c not in up]
        last: Refusal | None = None
        while order:
            c = order.pop(0)
            got = await c.pool.lease()
            if isinstance(got, Lease):
                self._down.pop(self._key(c), None)
                return got
            last = got
            reason = skip_reason(got.evidence, classify_evidence(got.evidence, self._rules))
            if reason == "throttled":
                order = [o for o in order if o.pool.limiter is not got.limiter]
            elif reason is not None:
                self._down[self._key(c)] = time.monotonic() + DOWN_S
            if reason is None or not order:
                return got
            emit(self._context, events.MX_SKIPPED, domain=self.domain, host=c.host, address=c.address,
                 reason=reason, **evidence_keys(got.evidence))
        assert last is not None, "an MX source has at least one address"
        return last

    async def give_back(self, session: Session, *, reusable: bool) -> None:
        for c in self.candidates:
            if c.pool.endpoint == session.endpoint:
                await c.pool.give_back(session, reusable=reusable)
                return
        session.close()

    @staticmethod
    def _key(c: _Candidate) -> tuple[str, int]:
        return c.address, c.pool.endpoint.port


class _Refuse:
    """A source that gives no connection, only ``evidence``: the DNS outcome
    (or the missing route) that ends the attempt of a domain's recipients."""

    def __init__(self, evidence: Evidence, limiter: Limiter) -> None:
        self.evidence = evidence
        self.limiter = limiter

    async def lease(self) -> Lease | Refusal:
        return Refusal(self.evidence, time.monotonic(), self.limiter)

    async def give_back(self, session: Session, *, reusable: bool) -> None:  # pragma: no cover
        session.close()


class RoutedResend:
    """A queued MX route's entry, as the queue runner resends it: through the
    router (:meth:`Router.resender`), so its domain takes the route the
    configuration gives it now and its MX hosts are looked up again.
    ``policy`` and ``pool`` are those of the domain's own settings (its
    ``domain:`` rule, else ``[defaults]``), for the runner's bookkeeping.

    .. versionadded:: 0.5
    """

    def __init__(self, router: Router, destination: Destination) -> None:
        self.router = router
        self.destination = destination
        domain = destination.domain or destination.host
        settings = router.config.mx_settings(domain, [])
        self.policy = settings.policy
        self._stand_in = Mailer(domain, destination.port, tls=TLSMode.NONE, config=router._unqueued,
                                limits=settings.limits, policy=settings.policy, name=domain)

    @property
    def pool(self) -> DestinationPool:
        return self._stand_in.pool

    async def deliver(self, envelope: Envelope, /, *, states: Mapping[str, RecipientState] | None = None,
                      enqueue: bool = True, suspensions: Queue | None = None) -> SendResult:
        return await self.router.deliver(envelope, states=states, enqueue=enqueue, suspensions=suspensions)

    async def close(self) -> None:
        await self._stand_in.close()


@dataclass(frozen=True, slots=True)
class RoutePlan:
    """Where the recipients of one domain go (:meth:`Router.plan`): the
    ``route`` (None: no route matches), the ``limit_key`` and ``settings``
    they count against, for an MX route its ``mx_hosts`` by preference, and
    ``failure``, the reply that would end their attempt (a DNS outcome, no
    route). ``from_cache``: the DNS answer came from the cache.

    .. versionadded:: 0.5
    """

    domain: str
    route: Route | None
    limit_key: str | None
    settings: Settings | None
    mx_hosts: tuple[MXHost, ...] = ()
    failure: Reply | None = None
    from_cache: bool = False


@dataclass(frozen=True, slots=True)
class _Group:
    kind: str  # "profile", "mx" or "none"
    route: Route | None
    domain: str  # the domain (mx, none), the first domain (profile)
    recipients: tuple[str, ...]
    domains: tuple[str, ...] = ()
    settings: Settings | None = None


class Router:
    """Send to recipients at any number of domains, each domain by its route.

    ::

        config = load_config("smtpretry.toml")      # with a [routes] table
        async with Router(config=config) as router:
            result = await router.send(message)     # one SendResult, every recipient

    :param config: the configuration; its ``[routes]`` table says where each
        domain goes, its ``[destinations]`` rules the limits, ``[dns]`` how MX
        hosts are looked up
    :param queue: where deferred recipients go (a :class:`~smtpretry.queue.Queue`
        or a URL), else ``[queue] url``; see the README for MX routes
    :param logger: a structlog-style logger for the decisions
    :param resolver: an :class:`~smtpretry.mx.MXResolver` to share (default:
        one made from ``[dns]``)
    :param tls_context: for MX routes with ``tls = "required"`` (to trust a
        private CA) or ``"opportunistic"`` (then it is used as it is)
    :param rng, clock: randomness (equal MX preferences, jitter) and the wall clock
    :raises ConfigError: no ``[routes]``, or an MX route without dnspython

    .. versionadded:: 0.5
    """

    def __init__(
        self,
        config: Config,
        *,
        queue: Queue | str | None = None,
        logger: Logger | None = None,
        resolver: MXResolver | None = None,
        tls_context: ssl.SSLContext | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not config.routes:
            raise ConfigError(
                f"{config.source}: routes: the Router needs a [routes] table "
                '(for example [routes.default] via = "mx" or via = "profile:NAME")'
            )
        self.config = config
        self._logger = logger
        self._rng = rng if rng is not None else random.Random()
        self._clock = clock
        self._tls_context = tls_context
        needs_dns = any(r.is_mx for r in config.routes)
        self.resolver: MXResolver | None = (
            resolver if resolver is not None else MXResolver(config.dns) if needs_dns else None
        )
        if queue is None and config.queue_url is not None:
            queue = config.queue_url
        self.queue: Queue | None = open_queue(queue) if isinstance(queue, str) else queue
        self._owns_queue = isinstance(queue, str)
        self._rules: tuple[Rule, ...] = (
            (NXDOMAIN_DEFER, *RULES) if config.dns.nxdomain == "defer" else RULES
        )
        # The Mailers of MX routes (and of refusals) must not write the queue themselves:
        # an entry records a host, and theirs is a limit key, not a host to connect to.
        self._unqueued = dataclasses.replace(config, queue_url=None)
        self._limiters: dict[str, Limiter] = {}
        self._pools: dict[tuple[object, ...], DestinationPool] = {}
        self._mailers: dict[tuple[object, ...], Mailer] = {}
        self._down: dict[tuple[str, int], float] = {}

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _resolved(self, destination: str, domain: str, route: str, mx_hosts: Iterable[str],
                  limit_key: str | None, from_cache: bool, recipients: Iterable[str]) -> None:
        emit(LogContext(destination, self._logger), events.ROUTE_RESOLVED, domain=domain, route=route,
             mx_hosts=list(mx_hosts), limit_key=limit_key, from_cache=from_cache,
             recipients=list(recipients))

    async def close(self) -> None:
        """QUIT the idle connections of every route and give shared slots back."""
        for mailer in self._mailers.values():
            await mailer.close()
        for pool in self._pools.values():
            await pool.close()
        for limiter in self._limiters.values():
            await limiter.close()
        if self.queue is not None and self._owns_queue:
            await self.queue.close()

    # -- sending ----------------------------------------------------------------------------

    async def send(
        self,
        message: Message | bytes | str,
        /,
        *,
        sender: str | None = None,
        recipients: str | Iterable[str] | None = None,
    ) -> SendResult:
        """Send ``message`` to every recipient by its domain's route and return
        what happened to each, as :meth:`Mailer.send <smtpretry.Mailer.send>` does.

        :raises MessageError: no sender or recipients, a bad address, or a
            domain that cannot be IDNA-encoded, before anything is sent.
        """
        rcpts = [recipients] if isinstance(recipients, str) else (
            list(recipients) if recipients is not None else None
        )
        return await self.deliver(build_envelope(message, sender, rcpts))

    async def deliver(
        self, envelope: Envelope, /, *, states: Mapping[str, RecipientState] | None = None,
        enqueue: bool = True, suspensions: Queue | None = None,
    ) -> SendResult:
        """Send a checked :class:`Envelope`: the recipients of each domain
        under that domain's route, all domains at once; one
        :class:`SendResult` whose keys are the envelope's recipients.

        ``result.queue_ids`` names every queue entry written (one per
        destination), ``result.queue_id`` the first.

        A route whose destination is suspended (``smtpretry queue suspend``:
        the profile's ``host:port`` or host, or an MX route's limit key such
        as ``mx:.google.com``), read from ``suspensions`` or else the router's
        queue, has its recipients deferred at once, unsent
        (:meth:`Mailer.suspension <smtpretry.Mailer.suspension>`).

        .. versionchanged:: 0.5 ``suspensions``

        :raises QueueError: a queue could not be written, or deferred
            recipients of an MX route could not be queued; ``.result`` is the
            whole send's result.
        """
        groups = self._group(envelope)
        done = await asyncio.gather(
            *(self._deliver(g, envelope, states or {}, enqueue, suspensions) for g in groups),
            return_exceptions=True,
        )
        outcomes: dict[str, Outcome] = {}
        queue_ids: list[str] = []
        problem: BaseException | None = None
        for got in done:
            result = got.result if isinstance(got, QueueError) else got
            if isinstance(got, BaseException) and not isinstance(got, QueueError):
                raise got
            if isinstance(got, QueueError) and problem is None:
                problem = got
            if isinstance(result, SendResult):
                outcomes.update(result.outcomes)
                queue_ids.extend(result.queue_ids)
        missing = [r for r in envelope.recipients if r not in outcomes]
        assert not missing or problem is not None, f"recipients without an outcome: {missing}"
        merged = SendResult(
            envelope.message_id, {r: outcomes[r] for r in envelope.recipients if r in outcomes},
            queue_id=queue_ids[0] if queue_ids else None, queue_ids=tuple(queue_ids),
        )
        if problem is not None:
            assert isinstance(problem, QueueError)
            problem.result = merged
            raise problem
        return merged

    def _group(self, envelope: Envelope) -> list[_Group]:
        by_domain: dict[str, list[str]] = {}
        for rcpt in envelope.recipients:
            try:
                domain = domain_key(rcpt.rpartition("@")[2]) if "@" in rcpt else ""
            except ValueError as exc:
                raise MessageError(f"recipient {rcpt!r}: {exc}") from None
            by_domain.setdefault(domain, []).append(rcpt)
        groups: list[_Group] = []
        profiles: dict[tuple[str, str], list[tuple[str, list[str], Route, Settings]]] = {}
        for domain, rcpts in by_domain.items():
            route = self.config.route_for(domain)
            if route is None:
                groups.append(_Group("none", None, domain, tuple(rcpts)))
            elif route.is_mx:
                groups.append(_Group("mx", route, domain, tuple(rcpts)))
            else:
                assert route.profile is not None
                p = self.config.profile(route.profile)
                settings = self.config.settings_for(p.host, p.port, recipient_domain=domain)
                profiles.setdefault((route.profile, settings.limit_key), []).append(
                    (domain, rcpts, route, settings)
                )
        for parts in profiles.values():
            first_domain, _, route, settings = parts[0]
            every = tuple(r for _, rs, _, _ in parts for r in rs)
            groups.append(_Group("profile", route, first_domain, every,
                                 tuple(d for d, _, _, _ in parts), settings))
        return groups

    async def _deliver(self, group: _Group, envelope: Envelope, states: Mapping[str, RecipientState],
                       enqueue: bool, suspensions: Queue | None = None) -> SendResult:
        sub = _subset(envelope, group.recipients)
        known = {r: s for r, s in states.items() if r in group.recipients}
        if group.kind == "none":
            self._resolved(group.domain, group.domain, "none", [], None, False, group.recipients)
            return await self._refused(sub, known, group.domain, unroutable(
                group.domain or "(none)", "no route for this domain in the configuration "
                "(add a [routes] default)"))
        route = group.route
        assert route is not None
        if group.kind == "profile":
            return await self._deliver_profile(group, route, sub, known, enqueue, suspensions)
        return await self._deliver_mx(group.domain, route, sub, known, enqueue, suspensions)

    async def _deliver_profile(self, group: _Group, route: Route, envelope: Envelope,
                               states: Mapping[str, RecipientState], enqueue: bool,
                               suspensions: Queue | None = None) -> SendResult:
        settings = group.settings
        assert settings is not None and route.profile is not None
        mailer = self._mailers.get(("profile", route.profile, settings.limit_key))
        if mailer is None:
            profile = self.config.profile(route.profile)
            helo = profile.local_hostname or route.helo_name or self.config.helo_name
            mailer = Mailer.from_profile(
                self.config, route.profile, local_hostname=helo, limits=settings.limits,
                policy=settings.policy, queue=self.queue,
                limiter=self._limiter(settings.limit_key, settings.limits),
                logger=self._logger, rng=self._rng, clock=self._clock, rules=self._rules,
            )
            self._mailers[("profile", route.profile, settings.limit_key)] = mailer
        for domain in group.domains:
            self._resolved(mailer.destination, domain, route.key, [], settings.limit_key, False,
                           [r for r in envelope.recipients if _domain_of(r) == domain])
        return await mailer.deliver(envelope, states=states, enqueue=enqueue, suspensions=suspensions)

    async def _deliver_mx(self, domain: str, route: Route, envelope: Envelope,
                          states: Mapping[str, RecipientState], enqueue: bool,
                          suspensions: Queue | None = None) -> SendResult:
        resolution = await self._resolve(domain, route)
        if resolution.failure is not None:
            self._resolved(domain, domain, route.key, resolution.host_names, None,
                           resolution.from_cache, envelope.recipients)
            result = await self._refused(envelope, states, domain, resolution.failure)
            if enqueue:
                result = await self._enqueue(result, envelope, states, route, domain, None,
                                             self.config.mx_settings(domain, []).policy.max_lifetime)
            return result
        hosts = order_hosts(resolution.hosts, self._rng)
        settings = self.config.mx_settings(domain, resolution.host_names)
        key = settings.limit_key
        limiter = self._limiter(key, settings.limits)
        helo = route.helo_name or self.config.helo_name
        mailer = self._mailers.get(("mx", route.key, key))
        if mailer is None:
            mailer = Mailer(
                key, route.mx_port, tls=TLSMode.NONE, config=self._unqueued, limits=settings.limits,
                policy=settings.policy, limiter=limiter, logger=self._logger, rng=self._rng,
                clock=self._clock, rules=self._rules, name=key, local_hostname=helo,
            )
            self._mailers[("mx", route.key, key)] = mailer
        chosen = [
            _Candidate(host.name, address,
                       self._pool(route, host.name, address, helo, limiter, settings.limits))
            for host, address in candidates(hosts)
        ]
        self._resolved(key, domain, route.key, [h.name for h in hosts], key, resolution.from_cache,
                       envelope.recipients)
        source = MXSource(domain, chosen, rules=self._rules, context=LogContext(key, self._logger),
                          down=self._down)
        # An MX route's Mailer has no queue of its own: the router's holds its suspensions.
        result = await mailer.deliver(envelope, states=states, sessions=source, enqueue=False,
                                      suspensions=suspensions if suspensions is not None else self.queue)
        if enqueue:
            result = await self._enqueue(result, envelope, states, route, domain, key,
                                         settings.policy.max_lifetime)
        return result

    async def _resolve(self, domain: str, route: Route) -> Resolution:
        if not domain:
            return Resolution(domain, failure=unroutable("(none)", "an address without a domain"))
        assert self.resolver is not None
        return for_route(await self.resolver.resolve(domain), allow_private=route.allow_private_mx)

    async def plan(self, domain: str) -> RoutePlan:
        """Where recipients at ``domain`` would go, without sending: the route,
        for an MX route the MX hosts (by preference) and the DNS outcome, the
        limit key and the settings (what ``smtpretry config check --domain``
        prints).

        :raises ValueError: the domain cannot be IDNA-encoded.
        """
        domain = domain_key(domain)
        route = self.config.route_for(domain)
        if route is None:
            return RoutePlan(domain, None, None, None, failure=unroutable(
                domain or "(none)", "no route for this domain in the configuration"))
        if not route.is_mx:
            assert route.profile is not None
            p = self.config.profile(route.profile)
            settings = self.config.settings_for(p.host, p.port, recipient_domain=domain)
            return RoutePlan(domain, route, settings.limit_key, settings)
        resolution = await self._resolve(domain, route)
        if resolution.failure is not None:
            return RoutePlan(domain, route, None, None, resolution.hosts, resolution.failure,
                             resolution.from_cache)
        settings = self.config.mx_settings(domain, resolution.host_names)
        return RoutePlan(domain, route, settings.limit_key, settings, resolution.hosts, None,
                         resolution.from_cache)

    async def _enqueue(self, result: SendResult, envelope: Envelope, states: Mapping[str, RecipientState],
                       route: Route, domain: str, provider: str | None, max_lifetime: float) -> SendResult:
        """Write the deferred recipients of an MX route's delivery to the queue:
        the entry records the route and the domain, not a host, so the runner
        looks the MX hosts up again when it resends (:meth:`resender`)."""
        if self.queue is None or not result.deferred:
            return result
        destination = Destination(domain or "(none)", route.mx_port, route.tls.value, None, route.key,
                                  domain, provider)
        entry = entry_from_result(destination, envelope, result, states=states,
                                  max_lifetime=max_lifetime, now=self._clock())
        try:
            queue_id = await self.queue.put(entry)
        except QueueError as exc:
            exc.result = result  # the caller still learns every recipient's outcome
            raise
        context = LogContext(provider or domain, self._logger).with_keys(message_id=envelope.message_id)
        emit(context, events.QUEUED, queue_id=queue_id, recipients=list(result.deferred),
             next_attempt_at=round(entry.next_attempt_at, 3), queue=self.queue.url)
        return dataclasses.replace(result, queue_id=queue_id, queue_ids=(queue_id,))

    # -- the queue ---------------------------------------------------------------------------

    def resender(self, destination: Destination) -> Mailer | RoutedResend:
        """What the queue runner resends an entry with (a ``mailer_factory``):
        for an MX route's entry, this router (the domain's route as configured
        now, its MX hosts looked up again); for a profile's, a Mailer from that
        profile; else a Mailer for the entry's host and port.

        .. versionadded:: 0.5
        """
        if destination.is_mx:
            return RoutedResend(self, destination)
        common: dict[str, Any] = {"logger": self._logger, "rng": self._rng, "clock": self._clock,
                                  "rules": self._rules}
        if destination.profile is not None:
            return Mailer.from_profile(self.config, destination.profile, **common)
        return Mailer(destination.host, destination.port, tls=destination.tls, config=self.config, **common)

    async def run_queue(self, *, once: bool = False, **runner: Any) -> QueueRunStats:
        """Deliver the due queue entries (those this router wrote and any
        other), all due now and then return (``once``), or until cancelled.
        ``runner`` goes to :class:`~smtpretry.runner.QueueRunner`.

        :raises QueueError: no queue, or the queue cannot be read or written.

        .. versionadded:: 0.5
        """
        from .runner import QueueRunner

        if self.queue is None:
            raise QueueError("run_queue: this Router has no queue (Router(..., queue=URL) or [queue] url)")
        runner.setdefault("clock", self._clock)
        runner.setdefault("logger", self._logger)
        return await QueueRunner(self.queue, self.resender, **runner).run(once=once)

    async def _refused(self, envelope: Envelope, states: Mapping[str, RecipientState], domain: str,
                       evidence: Reply) -> SendResult:
        """The recipients of ``domain`` get ``evidence`` (a DNS outcome, no
        route) through the engine, which classifies, decides and logs it."""
        settings = self.config.mx_settings(domain, []) if domain else Settings(
            self.config.limits, self.config.policy, "(none)", "defaults")
        name = domain or "(none)"
        limiter = Limiter(name, settings.limits, self._logger)
        mailer = Mailer(name, 25, tls=TLSMode.NONE, config=self._unqueued, limits=settings.limits,
                        policy=settings.policy, limiter=limiter, logger=self._logger, rng=self._rng,
                        clock=self._clock, rules=self._rules, name=name)
        return await mailer.deliver(envelope, states=states, enqueue=False,
                                    sessions=_Refuse(evidence, limiter))

    def _limiter(self, key: str, limits: Limits) -> Limiter:
        limiter = self._limiters.get(key)
        if limiter is None:
            if self.config.backend_url is not None:
                from .limits.redis import redis_limiter

                limiter = redis_limiter(self.config.backend_url, key, limits, self._logger)
            else:
                limiter = Limiter(key, limits, self._logger)
            self._limiters[key] = limiter
        return limiter

    def _pool(self, route: Route, host: str, address: str, helo: str | None, limiter: Limiter,
              limits: Limits) -> DestinationPool:
        key = (limiter.name, host, address, route.mx_port, route.tls, helo)
        pool = self._pools.get(key)
        if pool is None:
            endpoint = Endpoint(host=host, port=route.mx_port, tls=route.tls, address=address,
                                local_hostname=helo, tls_context=self._tls_context)
            pool = DestinationPool(endpoint, limits, self._logger, limiter)
            self._pools[key] = pool
        return pool


def _domain_of(rcpt: str) -> str:
    try:
        return domain_key(rcpt.rpartition("@")[2]) if "@" in rcpt else ""
    except ValueError:
        return ""


def _subset(envelope: Envelope, recipients: Sequence[str]) -> Envelope:
    return Envelope(
        sender=envelope.sender, recipients=tuple(recipients), data=envelope.data,
        message_id=envelope.message_id,
        smtputf8=not all(a.isascii() for a in (envelope.sender, *recipients)),
        eightbit=envelope.eightbit,
    )
