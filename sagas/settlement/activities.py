"""The settlement saga's activities: each idempotent by settlement id (bank keys
`<settlement>:<counterparty>:<asset>`, chain operations `<settlement>:<counterparty>:
<asset>`), each recording its step with the events that report it."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from temporalio import activity

from sagas import accounts
from sagas.confirmations import SettlementConfirmation, verify_confirmation
from sagas.errors import CustodyError, SettlementMismatch
from sagas.events import Envelope
from sagas.governance import Governance
from sagas.intents import Intent, RegisteredKey
from sagas.ledger import Transfer, TransferRecord
from sagas.liquidity import SettlementLeg
from sagas.operations import OperationRecord, request_hash, step_event_id
from sagas.payments import pay_once
from sagas.ports import (
    CoreBanking,
    IntentStore,
    Ledger,
    Liquidity,
    OperationStore,
    Payouts,
    TradeStore,
)
from sagas.records import RecordedSteps, step_event
from sagas.settlement import (
    Break,
    CounterpartyPlan,
    LegsSeen,
    Plan,
    SettlementInput,
    leg_operation,
)
from sagas.settlement.events import (
    BREAK_ALERT,
    FAILED_ALERT,
    ReconciliationBreak,
    SettlementFailed,
    SettlementLegView,
    SettlementStep,
    event_type,
)
from sagas.topics import ALERTS
from sagas.withdrawal import ChainStatus

SOURCE = "/custody/settlement"
_ALERT_AFTER_ATTEMPTS = 4  # a platform fiat leg still unpaid after this many tries
CHAINS = {"BTC": "bitcoin", "ETH": "ethereum"}
log = logging.getLogger("custody.settlement")


def end_to_end_id(settlement_id: str, counterparty: str) -> str:
    digest = hashlib.sha256(f"{settlement_id}/{counterparty}".encode()).hexdigest()
    return "STL" + digest[:32]


LEG_INTENT_TTL = timedelta(hours=24)  # from the leg's record: time enough to sign it


def event(sid: str, step: str, **data: Any) -> tuple[str, Envelope]:
    payload = SettlementStep(settlement_id=sid, **data)
    return step_event(sid, step, payload, source=SOURCE, event_type=event_type, subject=sid)


def _not_sent(leg: SettlementLeg, exc: CustodyError) -> tuple[str, dict[str, Any]]:
    why = f"the platform's {leg.asset} leg was not sent: {exc.code} {exc.detail}"
    return why, {"error_code": exc.code, "detail": exc.detail}


def legs_view(legs: list[SettlementLeg]) -> list[SettlementLegView]:
    return [
        SettlementLegView(
            asset=leg.asset,
            amount=str(leg.amount),
            payer=leg.payer,
            to=leg.to,
            reference=leg.reference,
        )
        for leg in legs
    ]


def confirmation_problem(
    confirmation: SettlementConfirmation | None,
    settlement_id: str,
    part: CounterpartyPlan,
    keys: Mapping[str, RegisteredKey],
) -> str | None:
    """Why the provider's confirmation does not confirm exactly this part of the plan (its
    legs and its orders, by the counterparty's registered key); None if it does."""
    if confirmation is None:
        return f"{part.counterparty} sent no signed confirmation"
    if not verify_confirmation(confirmation, keys):
        return f"{part.counterparty}'s confirmation is not signed by its registered key"
    if (confirmation.counterparty, confirmation.settlement_id, confirmation.end_to_end_id) != (
        part.counterparty,
        settlement_id,
        part.end_to_end_id,
    ):
        return f"{part.counterparty}'s confirmation is for another settlement"
    confirmed = sorted((x.asset, x.amount, x.payer, x.to) for x in confirmation.legs)
    planned = sorted((x.asset, x.amount, x.payer, x.to) for x in part.legs)
    if confirmed != planned or sorted(confirmation.orders) != sorted(part.orders):
        return f"{part.counterparty} confirmed other legs or trades than the plan's"
    return None


class SettlementActivities(RecordedSteps):
    def __init__(
        self,
        ledger: Ledger,
        operations: OperationStore,
        trades: TradeStore,
        bank: CoreBanking,
        providers: Mapping[str, Liquidity],
        payouts: Payouts,
        settlement_address: Callable[[str, str], str],
        check_destination: Callable[[str, str], None] = lambda _asset, _to: None,
        intents: IntentStore | None = None,
        fee_cap: Callable[[str], int] = lambda _asset: 0,
        governance: Governance | None = None,
    ) -> None:
        """`check_destination(asset, address)` raises a CustodyError for a destination
        the platform must not pay (the checks a client's withdrawal gets: format,
        burn addresses, the platform's own addresses)."""
        self._check_destination = check_destination
        self._governance = governance  # to check the providers' confirmations early
        self._intents = intents
        self._fee_cap = fee_cap
        self._ledger = ledger
        self._ops = operations
        self._trades = trades
        self._bank = bank
        self._providers = providers
        self._payouts = payouts
        self._address = settlement_address

    # --- plan -------------------------------------------------------------------------

    def all(self) -> list[Callable[..., Any]]:
        """Every activity of the saga, as a worker registers them."""
        return [
            self.plan,
            self.instruct,
            self.counterparty_legs,
            self.send_crypto,
            self.crypto_status,
            self.book_crypto,
            self.pay_fiat,
            self.settled,
            self.compensate,
            self.reconcile,
        ]

    @activity.defn(name="settlement.plan")
    def plan(self, req: SettlementInput) -> Plan:
        """Take every unsettled trade of each counterparty into this settlement and net
        them per asset: one leg per counterparty and asset. Recorded once."""
        sid = req.settlement_id
        now = datetime.now(UTC)
        self._ops.create(
            OperationRecord(
                id=sid,
                kind="settlement",
                client_id=None,
                asset=req.currency,
                chain="bank",
                amount=0,
                request_hash=request_hash({"settlement": sid}),
                requested_by=req.requested_by,
                state="requested",
                created_at=now,
                updated_at=now,
            )
        )
        recorded = self._recorded(sid, "planned")
        if recorded is not None:
            return Plan.model_validate(recorded)
        parts = []
        for cp in req.counterparties:
            ssi = self._providers[cp].instructions()  # before any trade is taken
            self._trades.assign(sid, [t.operation_id for t in self._trades.unsettled(cp)])
            # What this settlement holds of the counterparty's trades, including those an
            # earlier attempt of this activity took before it died.
            mine = [t for t in self._trades.for_settlement(sid) if t.counterparty == cp]
            if not mine:
                continue
            totals: dict[str, int] = {}
            for t in mine:
                sign = 1 if t.side == "buy" else -1  # the platform bought: the provider delivers
                totals[t.asset] = totals.get(t.asset, 0) + sign * t.quantity
                totals[t.currency] = totals.get(t.currency, 0) - sign * t.lp_notional
            legs = []
            for asset, amount in sorted(totals.items()):
                if amount == 0:
                    continue
                payer: Literal["provider", "platform"] = "provider" if amount > 0 else "platform"
                if asset == req.currency:
                    to = req.platform_iban if payer == "provider" else ssi.iban
                elif payer == "provider":
                    self._ledger.open_account(accounts.settlement_account(cp, asset))
                    to = self._address(cp, asset)
                else:
                    to = ssi.addresses[asset]
                legs.append(SettlementLeg(asset=asset, amount=abs(amount), payer=payer, to=to))
            parts.append(
                CounterpartyPlan(
                    counterparty=cp,
                    trades=[t.operation_id for t in mine],
                    orders=[t.client_order_id for t in mine],
                    legs=legs,
                    end_to_end_id=end_to_end_id(sid, cp),
                    planned_at=now,
                )
            )
        plan = Plan(settlement_id=sid, parts=parts)
        self._ops.advance(
            sid,
            "planned",
            [
                event(
                    sid,
                    f"planned:{p.counterparty}",
                    counterparty=p.counterparty,
                    trades=len(p.trades),
                    legs=legs_view(p.legs),
                    end_to_end_id=p.end_to_end_id,
                )
                for p in parts
            ],
            detail=plan.model_dump(mode="json"),
            state="planned" if parts else "nothing_to_settle",
        )
        return plan

    # --- delivery versus payment ----------------------------------------------------------
    @activity.defn(name="settlement.instruct")
    def instruct(self, req: SettlementInput, part: CounterpartyPlan) -> str | None:
        """Hand the provider its instructions; the refusal's code if it does not agree.
        Its signed confirmation of the legs is kept with the step: what the signer pays
        the platform's legs from."""
        try:
            state = self._providers[part.counterparty].settle(
                req.settlement_id, part.end_to_end_id, part.orders, part.legs
            )
        except CustodyError as exc:
            if exc.transient:
                raise
            return f"{exc.code} {exc.detail}"
        confirmation = state.confirmation
        if self._governance is not None:
            # What the signer will hold the platform's legs to, checked before the
            # provider delivers: a confirmation it would refuse is compensated now, not
            # found out once the provider's legs have arrived.
            problem = confirmation_problem(
                confirmation, req.settlement_id, part, self._governance.counterparty_keys()
            )
            if problem is not None:
                log.warning("settlement %s: %s", req.settlement_id, problem)
                return f"{SettlementMismatch.code} {problem}"
        self._ops.advance(
            req.settlement_id,
            f"instructed:{part.counterparty}",
            [
                event(
                    req.settlement_id,
                    f"instructed:{part.counterparty}",
                    counterparty=part.counterparty,
                )
            ],
            detail={
                "confirmation": None
                if confirmation is None
                else confirmation.model_dump(mode="json")
            },
        )
        return None

    def _confirmation(self, req: SettlementInput, part: CounterpartyPlan) -> Any:
        """The provider's signed confirmation of this settlement, as recorded when it was
        instructed (asked again if none was recorded); None if it sent none."""
        recorded = self._recorded(req.settlement_id, f"instructed:{part.counterparty}") or {}
        if recorded.get("confirmation") is not None:
            return recorded["confirmation"]
        state = self._providers[part.counterparty].settlement(req.settlement_id)
        return None if state.confirmation is None else state.confirmation.model_dump(mode="json")

    @activity.defn(name="settlement.counterparty_legs")
    def counterparty_legs(self, req: SettlementInput, part: CounterpartyPlan) -> LegsSeen:
        """The provider's legs confirmed by the platform's own sources: crypto credited
        to the settlement account by the deposit saga (so final on chain), fiat on the
        platform's bank statement under the settlement's end-to-end id."""
        try:
            state = self._providers[part.counterparty].settlement(req.settlement_id)
            statement = self._bank.statement(req.platform_iban, end_to_end_id=part.end_to_end_id)
        except CustodyError as exc:  # not confirmed; the deadline still runs
            return LegsSeen(confirmed=False, missing=[f"{exc.code}: cannot ask ({exc.detail})"])
        reported = {(leg.asset, leg.payer): leg for leg in state.legs}
        missing = []
        for leg in part.legs:
            if leg.payer != "provider":
                continue
            if leg.asset == req.currency:
                paid = sum(e.amount for e in statement if e.indicator == "CRDT")
                if paid < leg.amount:
                    missing.append(f"{leg.asset}: {paid} of {leg.amount} at the bank")
                continue
            ref = reported.get((leg.asset, leg.payer))
            tx = ref.reference if ref is not None else None
            if not tx:
                missing.append(f"{leg.asset}: not delivered ({ref.status if ref else 'unknown'})")
                continue
            # Only a credit booked since this settlement was planned counts: a provider
            # cannot settle twice with one transaction.
            credited = sum(
                r.amount
                for r in self._credits(accounts.settlement(part.counterparty, leg.asset))
                if (r.reference or "").startswith(f"{CHAINS[leg.asset]}:{tx}:")
                and r.recorded_at >= part.planned_at
                and r.credit_account == accounts.settlement(part.counterparty, leg.asset)
            )
            if credited < leg.amount:
                missing.append(f"{leg.asset}: {credited} of {leg.amount} credited from {tx}")
        if not missing:
            self._ops.advance(
                req.settlement_id,
                f"counterparty_delivered:{part.counterparty}",
                [
                    event(
                        req.settlement_id,
                        f"counterparty_delivered:{part.counterparty}",
                        counterparty=part.counterparty,
                    )
                ],
            )
        return LegsSeen(confirmed=not missing, missing=missing)

    def _credits(self, account_id: str) -> list[TransferRecord]:
        """Every entry of a settlement account, page by page (oldest first)."""
        out: list[TransferRecord] = []
        after = 0
        while True:
            page = self._ledger.history(account_id, after_seq=after, limit=1000)
            out.extend(page)
            if len(page) < 1000:
                return out
            after = page[-1].seq

    @activity.defn(name="settlement.send_crypto")
    def send_crypto(
        self, req: SettlementInput, part: CounterpartyPlan, leg: SettlementLeg
    ) -> str | None:
        """The platform's crypto leg: recorded as an approved operation the signer checks,
        then sent like a withdrawal (once per operation id). None if it cannot be sent (a
        destination the platform must not pay, a payment that cannot be built, a refusal
        with nothing recorded): alerted, the leg stays owed, never retried for ever."""
        op_id = leg_operation(req.settlement_id, part.counterparty, leg.asset)
        try:
            self._check_destination(leg.asset, leg.to)
        except CustodyError as exc:
            if exc.transient:
                raise
            self._leg_failed(req, part, leg, *_not_sent(leg, exc))
            return None
        now = datetime.now(UTC)
        stored, _ = self._ops.create(
            OperationRecord(
                id=op_id,
                kind="settlement",
                client_id=None,
                asset=leg.asset,
                chain=CHAINS[leg.asset],
                amount=leg.amount,
                destination=leg.to,
                request_hash=request_hash({"leg": op_id, "amount": str(leg.amount), "to": leg.to}),
                requested_by=req.requested_by,
                state="approved",
                approved=True,
                created_at=now,
                updated_at=now,
            )
        )
        if self._intents is not None:
            # What the signer holds the leg to: the counterparty's signed confirmation
            # of what it is owed, and governance's settlement policy for the asset (the
            # counterparties' addresses it may pay), not this record.
            confirmation = self._confirmation(req, part)
            self._intents.put_intent(
                Intent(
                    kind="settlement_leg",
                    operation_id=op_id,
                    client_id=None,
                    asset=leg.asset,
                    amount=leg.amount,
                    destination=leg.to,
                    fee_cap=self._fee_cap(leg.asset),
                    policy_version=0,
                    expires_at=(stored.created_at + LEG_INTENT_TTL).replace(microsecond=0),
                    payload={
                        "counterparty": part.counterparty,
                        "chain": CHAINS[leg.asset],
                        "confirmation": confirmation,
                    },
                ),
                0,
            )
        try:
            return self._payouts.send(op_id, leg.asset, leg.to, leg.amount)
        except CustodyError as exc:
            if exc.transient:
                raise
            # Non-transient and nothing recorded (the payouts checked): nothing was sent.
            self._leg_failed(req, part, leg, *_not_sent(leg, exc))
            return None

    def _leg_failed(
        self,
        req: SettlementInput,
        part: CounterpartyPlan,
        leg: SettlementLeg,
        missing: str,
        detail: dict[str, Any] | None = None,
        kind: str = "leg_failed",
    ) -> None:
        """The platform's leg did not pay (reverted, never sent: `leg_failed`; not paid
        yet: `leg_delayed`): alerted once; the leg stays owed, for operators."""
        step = f"{kind}:{part.counterparty}:{leg.asset}"
        alert = Envelope(
            id=step_event_id(req.settlement_id, step),
            source=SOURCE,
            type=FAILED_ALERT,
            subject=req.settlement_id,
            data=SettlementFailed(
                settlement_id=req.settlement_id,
                counterparty=part.counterparty,
                missing=[missing],
                trades=part.trades,
            ).model_dump(mode="json"),
        )
        log.warning("settlement %s: %s", req.settlement_id, missing)
        self._ops.advance(req.settlement_id, step, [(ALERTS.name, alert)], detail=detail)

    @activity.defn(name="settlement.crypto_status")
    def crypto_status(
        self, req: SettlementInput, part: CounterpartyPlan, leg: SettlementLeg
    ) -> ChainStatus:
        return self._payouts.status(
            leg_operation(req.settlement_id, part.counterparty, leg.asset), leg.asset
        )

    @activity.defn(name="settlement.book_crypto")
    def book_crypto(
        self, req: SettlementInput, part: CounterpartyPlan, leg: SettlementLeg, status: ChainStatus
    ) -> bool:
        """The delivery left the platform's holdings (and paid a network fee). A reverted
        transaction moved nothing but its fee: the leg stays owed (reconciliation shows
        it as a break)."""
        op_id = leg_operation(req.settlement_id, part.counterparty, leg.asset)
        commands = []
        if status.state == "final":
            commands.append(
                Transfer(
                    id=f"{op_id}:delivered",
                    debit_account=accounts.settlement(part.counterparty, leg.asset),
                    credit_account=accounts.omnibus(leg.asset),
                    asset=leg.asset,
                    amount=leg.amount,
                    reference=f"{CHAINS[leg.asset]}:{status.tx_hash}",
                )
            )
        if status.fee > 0:
            commands.append(
                Transfer(
                    id=f"{op_id}:fee",
                    debit_account=accounts.network_fees(status.fee_asset),
                    credit_account=accounts.omnibus(status.fee_asset),
                    asset=status.fee_asset,
                    amount=status.fee,
                    reference=status.tx_hash,
                )
            )
        if commands:
            self._ledger.submit(commands)
        state = "completed" if status.state == "final" else "failed"
        self._ops.advance(op_id, state, state=state, tx_hash=status.tx_hash, fee=status.fee)
        if state == "failed":
            self._leg_failed(
                req, part, leg, f"the platform's {leg.asset} leg reverted: {status.tx_hash}"
            )
        return state == "completed"

    @activity.defn(name="settlement.pay_fiat")
    def pay_fiat(self, req: SettlementInput, part: CounterpartyPlan, leg: SettlementLeg) -> str:
        """The platform's fiat leg, once: under one key, `<settlement>:<counterparty>:
        <asset>:1`, asked about before it is sent; a new key only after the bank stated
        that it refused the previous one (sagas/payments.py)."""
        # A second witness only (statements may lag): it also sees a payment made under
        # the per-attempt keys of earlier versions of this activity.
        paid = [
            e
            for e in self._bank.statement(req.platform_iban, end_to_end_id=part.end_to_end_id)
            if e.indicator == "DBIT"
        ]
        if paid:
            return f"entry-{paid[0].entry_id}"
        op_id = leg_operation(req.settlement_id, part.counterparty, leg.asset)
        try:
            payment = pay_once(
                self._bank,
                self._ops,
                req.settlement_id,
                f"{part.counterparty}:{leg.asset}",
                op_id,
                lambda key: self._bank.transfer(
                    key,
                    req.platform_iban,
                    leg.to,
                    leg.amount,
                    leg.asset,
                    part.end_to_end_id,
                    f"settlement {req.settlement_id} {part.counterparty}",
                ),
            )
        except CustodyError as exc:
            # The provider has delivered; the platform owes this leg. It is tried again
            # (patiently: the cause may be fixed, e.g. the account funded), and after a
            # few tries the desk is told, once, rather than nobody hearing of it.
            if activity.info().attempt >= _ALERT_AFTER_ATTEMPTS:
                self._leg_failed(
                    req,
                    part,
                    leg,
                    f"the platform's {leg.asset} leg is not paid yet: {exc.code} {exc.detail}",
                    {"error_code": exc.code, "detail": exc.detail},
                    kind="leg_delayed",
                )
            raise
        return payment.payment_id

    @activity.defn(name="settlement.settled")
    def settled(self, req: SettlementInput, part: CounterpartyPlan) -> None:
        step = f"settled:{part.counterparty}"
        self._ops.advance(
            req.settlement_id,
            step,
            [
                event(
                    req.settlement_id,
                    step,
                    counterparty=part.counterparty,
                    trades=len(part.trades),
                    legs=legs_view(part.legs),
                    end_to_end_id=part.end_to_end_id,
                )
            ],
        )

    @activity.defn(name="settlement.compensate")
    def compensate(self, req: SettlementInput, part: CounterpartyPlan, missing: list[str]) -> None:
        """The provider's legs did not all arrive: nothing of the platform's was sent. The
        trades are unsettled again at both ends; operators are told what is missing."""
        sid, cp = req.settlement_id, part.counterparty
        try:
            self._providers[cp].cancel_settlement(sid)
        except CustodyError as exc:
            if exc.transient:
                raise
        released = self._trades.release(sid, cp)
        step = f"compensated:{cp}"
        alert = Envelope(
            id=step_event_id(sid, f"alert:{step}"),
            source=SOURCE,
            type=FAILED_ALERT,
            subject=sid,
            data=SettlementFailed(
                settlement_id=sid, counterparty=cp, missing=missing, trades=released
            ).model_dump(mode="json"),
        )
        self._ops.advance(
            sid,
            step,
            [
                (ALERTS.name, alert),
                event(sid, step, counterparty=cp, detail="; ".join(missing)[:500]),
            ],
            detail={"missing": missing, "trades": released},
        )

    # --- reconciliation ---------------------------------------------------------------------
    @activity.defn(name="settlement.reconcile")
    def reconcile(self, req: SettlementInput, plan: Plan, outcome: str) -> list[Break]:
        """Every settlement account of the plan's counterparties against the trades still
        unsettled: a settled trade leaves nothing behind, an unsettled one exactly its
        quantity. A difference is a break, alerted with the trades involved."""
        sid = req.settlement_id
        breaks = []
        for part in plan.parts:
            unsettled = self._trades.unsettled(part.counterparty)
            for asset in sorted({leg.asset for leg in part.legs if leg.asset != req.currency}):
                expected = -sum(
                    (t.quantity if t.side == "buy" else -t.quantity)
                    for t in unsettled
                    if t.asset == asset
                )
                balance = self._ledger.balance(accounts.settlement(part.counterparty, asset)).total
                if balance != expected:
                    involved = part.trades + [t.operation_id for t in unsettled if t.asset == asset]
                    breaks.append(
                        Break(
                            counterparty=part.counterparty,
                            asset=asset,
                            ledger=balance,
                            expected=expected,
                            trades=sorted(set(involved)),
                        )
                    )
        events = [
            (
                ALERTS.name,
                Envelope(
                    id=step_event_id(sid, f"break:{b.counterparty}:{b.asset}"),
                    source=SOURCE,
                    type=BREAK_ALERT,
                    subject=sid,
                    data=ReconciliationBreak(
                        settlement_id=sid,
                        counterparty=b.counterparty,
                        asset=b.asset,
                        ledger=str(b.ledger),
                        expected=str(b.expected),
                        trades=b.trades,
                    ).model_dump(mode="json"),
                ),
            )
            for b in breaks
        ]
        self._ops.advance(
            sid,
            "reconciled",
            [*events, event(sid, "reconciled", breaks=len(breaks))],
            detail={"breaks": [b.model_dump(mode="json") for b in breaks]},
            state=outcome,
        )
        return breaks
