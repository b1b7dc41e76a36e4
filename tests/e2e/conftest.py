"""The end-to-end tier: the platform's processes on the real stack, driven over HTTP."""

from __future__ import annotations

import concurrent.futures
import contextlib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from adapters.keys.hd import BipDeriver
from services.settings import PlatformSettings, stack_env_file
from tests.e2e.harness import Running, post, wait_for

ETH = 10**18
USD = 10**6  # CTUSD has 6 decimals


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every e2e test needs the stack; the modules that share one platform run first and
    together (so it is stopped before the others start theirs)."""
    e2e = [i for i, item in enumerate(items) if "tests/e2e/" in str(item.path)]
    for i in e2e:
        items[i].add_marker(pytest.mark.stack)
    ordered = sorted((items[i] for i in e2e), key=lambda item: not _shares(item))
    for i, item in zip(e2e, ordered, strict=True):
        items[i] = item


def _shares(item: pytest.Item) -> bool:
    module = getattr(item, "module", None)
    return bool(getattr(module, "SHARED_PLATFORM", False))


class _Shared:
    """The platform the SHARED_PLATFORM modules use, started by the first of them."""

    running: Running | None = None
    stop: Callable[[], None] | None = None


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Stop the shared platform after the last test that uses it."""
    if _shares(item) and (nextitem is None or not _shares(nextitem)) and _Shared.stop:
        _Shared.stop()
        _Shared.running = _Shared.stop = None


# The audit writer's lag when each platform that ran one stopped: the chain keeps up with
# the events topic under this tier's load (printed at the end of the run).
AUDIT_LAGS: list[str] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if AUDIT_LAGS:
        terminalreporter.section("audit writer lag as each platform stopped")
        for line in AUDIT_LAGS:
            terminalreporter.write_line(line)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """A run that stopped early (-x, a keyboard interrupt) stops the shared platform too."""
    if _Shared.stop:
        _Shared.stop()
        _Shared.running = _Shared.stop = None
    _Ahead.close()


@contextlib.contextmanager
def platform(overrides: dict[str, str], workdir: Path) -> Iterator[Running]:
    """The whole platform on a fresh database, down and dropped after."""
    with _started(overrides, workdir) as running:
        _begin(running)
        yield running


@contextlib.contextmanager
def _started(overrides: dict[str, str], workdir: Path) -> Iterator[Running]:
    """The platform up on a fresh database, but for its router and its blocks (_begin)."""
    if not stack_env_file().exists():
        pytest.fail("the stack is not up: run `make up` or `custody stack up`")
    settings = PlatformSettings.load()
    name = f"e2e_{uuid.uuid4().hex[:12]}"
    admin = settings.postgres_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    url = settings.postgres_url.rsplit("/", 1)[0] + f"/{name}"
    running = Running(settings, url, workdir, **overrides)
    try:
        running.up(ahead=True)
        yield running
    finally:
        if "audit" in running.procs:
            with contextlib.suppress(Exception):
                AUDIT_LAGS.append(f"{workdir.name}: {running.audit_lag()}")
        running.down()
        for log in sorted(workdir.glob("*.log")):
            print(f"--- {log.name} (last lines)\n{running.tail(log.stem, 15)}")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'drop database if exists "{name}" with (force)')


def _begin(running: Running) -> None:
    """The platform's tests begin: its router starts, blocks are made, the hot wallet is
    topped up."""
    running.begin()
    fund_hot_wallet(running)


DEFAULTS = {"approval_ttl_seconds": "20"}


class _Ahead:
    """The next module's platform, started in the background while this module's tests
    run (its processes' start is most of a module's setup): blocks are made only once
    its own tests begin (it never disturbs a test that holds the chains still), and its
    router starts then too (it would answer this module's commands too)."""

    module: str | None = None
    future: concurrent.futures.Future[tuple[Running, contextlib.ExitStack]] | None = None
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="ahead")

    @classmethod
    def close(cls) -> None:
        """A platform started ahead that no test took (an early stop) is stopped too."""
        future, cls.future, cls.module = cls.future, None, None
        if future is not None:
            with contextlib.suppress(Exception):
                future.result()[1].close()


def _start(overrides: dict[str, str], workdir: Path) -> tuple[Running, contextlib.ExitStack]:
    stack = contextlib.ExitStack()
    try:
        return stack.enter_context(_started(overrides, workdir)), stack
    except BaseException:
        stack.close()
        raise


def _overrides(module: Any) -> dict[str, str]:
    return {**DEFAULTS, **getattr(module, "PLATFORM", {})}


def _own_platform(item: pytest.Item) -> bool:
    """A test whose module starts a platform of its own (not the shared one)."""
    fixtures = getattr(item, "fixturenames", ())
    return "run" in fixtures and not _shares(item)


def _start_next(request: pytest.FixtureRequest, tmp: pytest.TempPathFactory) -> None:
    """Start, in the background, the platform of the next module that needs its own (a
    module that sets PLATFORM_AHEAD = False, whose processes need something its own
    fixtures start first, is started in its turn; while a module that sets
    PLATFORM_QUIET = True runs, whose figures the two cores' load would skew, none is)."""
    if _Ahead.future is not None or getattr(request.module, "PLATFORM_QUIET", False):
        return
    items = request.session.items
    here = request.module.__name__
    after = [i for i in items if _own_platform(i) and i.module.__name__ != here]  # type: ignore[attr-defined]
    seen = [i.module.__name__ for i in items]  # type: ignore[attr-defined]
    later = [i for i in after if seen.index(i.module.__name__) > seen.index(here)]  # type: ignore[attr-defined]
    if not later:
        return
    module = later[0].module  # type: ignore[attr-defined]
    if not getattr(module, "PLATFORM_AHEAD", True):
        return
    _Ahead.module = module.__name__
    workdir = tmp.mktemp("platform")
    _Ahead.future = _Ahead.pool.submit(_start, _overrides(module), workdir)


def _take(
    request: pytest.FixtureRequest, tmp: pytest.TempPathFactory
) -> tuple[Running, contextlib.ExitStack]:
    """This module's platform, begun: the one started ahead for it, else one started now."""
    here = request.module.__name__
    started = None
    if _Ahead.module == here and _Ahead.future is not None:
        future, _Ahead.future, _Ahead.module = _Ahead.future, None, None
        try:
            started = future.result()
        except Exception as exc:  # started again in its turn, on two free cores
            print(f"the platform started ahead for {here} did not start: {exc}")
    if started is not None:
        running, stack = started
    else:
        _Ahead.close()  # started for a module that is not next after all
        running, stack = _start(_overrides(request.module), tmp.mktemp("platform"))
    try:
        _begin(running)
    except BaseException:
        stack.close()
        raise
    return running, stack


@pytest.fixture(scope="module")
def run(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    """The whole platform on a fresh database, for one test module (whose PLATFORM dict,
    if any, overrides settings: {"stuck_after_seconds": "8"}). Modules that set
    SHARED_PLATFORM = True (no PLATFORM; they neither stop nor restart its processes,
    and look only at their own clients) share one, started by the first of them. While a
    module's tests run, the next module's platform is started (see _Ahead)."""
    if getattr(request.module, "SHARED_PLATFORM", False):
        assert not hasattr(request.module, "PLATFORM"), "a shared platform has the defaults"
        if _Shared.running is None:
            stack = contextlib.ExitStack()
            _Shared.running = stack.enter_context(
                platform(DEFAULTS, tmp_path_factory.mktemp("shared-platform"))
            )
            _Shared.stop = stack.close
        _start_next(request, tmp_path_factory)
        yield _Shared.running
        return
    running, stack = _take(request, tmp_path_factory)
    with stack:
        _start_next(request, tmp_path_factory)
        yield running


def fund_hot_wallet(run: Running) -> str:
    """The operator tops up each lane of the hot wallet on chain (50 ETH and 10,000
    CTUSD each); the platform books it as treasury. The first lane's address."""
    ops = run.http("ops-treasurer", "operator")
    treasury = ops.get("/v1/treasury").json()
    lanes = [str(a) for a in treasury["ethereum_hot_lanes"]]
    assert lanes[0] == treasury["ethereum_hot_wallet"]
    for hot in lanes:
        run.faucet.fund_eth(hot, 50 * ETH)
        run.faucet.mint_token(run.settings.eth_token_address, hot, 10_000 * USD)

    def booked() -> bool:
        accounts = {a["account_id"]: a for a in ops.get("/v1/treasury").json()["accounts"]}
        return accounts["treasury:ETH"]["total_minor"] == str(len(lanes) * 50 * ETH) and (
            accounts["treasury:CTUSD"]["total_minor"] == str(len(lanes) * 10_000 * USD)
        )

    wait_for("the treasury top-up to be booked", booked)
    return lanes[0]


def new_client(run: Running, prefix: str = "c") -> tuple[str, Any, Any]:
    """A new client (opened by an operator): (id, operator HTTP client, client HTTP client)."""
    client_id = f"{prefix}-{uuid.uuid4().hex[:8]}"
    ops = run.http("ops-onboarding", "operator")
    created = post(ops, "/v1/clients", {"client_id": client_id, "name": f"Client {client_id}"})
    assert created.status_code == 201, created.text
    return client_id, ops, run.http(f"user-{client_id}", "client", client_id)


def balances(http: Any, client_id: str) -> dict[str, int]:
    reply = http.get(f"/v1/clients/{client_id}/balances")
    assert reply.status_code == 200, reply.text
    return {b["asset"]: int(b["total_minor"]) for b in reply.json()}


def available(http: Any, client_id: str) -> dict[str, int]:
    reply = http.get(f"/v1/clients/{client_id}/balances")
    return {b["asset"]: int(b["available_minor"]) for b in reply.json()}


def address(http: Any, client_id: str, asset: str) -> str:
    reply = post(http, f"/v1/clients/{client_id}/deposit-addresses", {"asset": asset})
    assert reply.status_code == 201, reply.text
    return str(reply.json()["address"])


def withdrawal(http: Any, operation_id: str) -> dict[str, Any]:
    reply = http.get(f"/v1/withdrawals/{operation_id}")
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def until_state(http: Any, operation_id: str, *states: str, timeout: float = 120) -> Any:
    seen: list[dict[str, Any]] = []

    def reached() -> Any:
        found = withdrawal(http, operation_id)
        seen[:] = [found]
        return found if found["state"] in states else None

    try:
        return wait_for(f"{operation_id} to reach {states}", reached, timeout=timeout)
    except AssertionError as exc:  # say where it was instead
        raise AssertionError(f"{exc}; it is {seen[-1] if seen else None}") from None


def credited(run: Running, http: Any, client_id: str, expected: dict[str, int]) -> None:
    wait_for(
        f"{client_id} credited {expected}",
        lambda: all(balances(http, client_id)[a] == v for a, v in expected.items()),
        timeout=120,
    )


def external_btc_address(network: str) -> str:
    deriver = BipDeriver(network)
    seed = deriver.seed(deriver.new_mnemonic())
    return deriver.address(deriver.account_xpub(seed, "bitcoin"), "bitcoin", 0, 0)


def stake_view(http: Any, stake_id: str) -> dict[str, Any]:
    reply = http.get(f"/v1/stakes/{stake_id}")
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def commission_taken(http: Any, client_id: str) -> int:
    """The platform's commission booked from the client's staking rewards: the claims'
    and that on the rewards a delegation, undelegation or redelegation paid on the way
    (every step's `commission`, over its stakes', redelegations' and unstakes' timelines).
    It stays at the client's address until a sweep (docs/staking.md): the address holds
    the available balance plus this."""
    total = 0
    for listed in http.get(f"/v1/clients/{client_id}/stakes").json():
        view = stake_view(http, listed["stake_id"])
        timelines = [view["timeline"]] + [
            http.get(f"/v1/unstakes/{u['unstake_id']}").json()["timeline"]
            for u in view.get("unstakes") or []
        ]
        for timeline in timelines:
            total += sum(int((s.get("detail") or {}).get("commission") or 0) for s in timeline)
    return total


def ledger_total(run: Running, account_id: str) -> int:
    """A ledger account's posted total, read from the platform's database."""
    from adapters.ledger.sql import SqlLedger

    return SqlLedger(run.db_url, migrate=False).balance(account_id).total
