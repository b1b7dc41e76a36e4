"""Creating wallets and handing out deposit addresses, with no seed left in clear.

The caller's KeyWrapper is the worker's role: it can wrap a new seed but never
unwrap one. Addresses come from the stored xpubs, so no secret is needed after
creation; only the signer (services/signer) ever sees a seed again.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sagas.keys import CHAINS, AddressAssignment, Chain, WalletRecord
from sagas.ports import KeyDerivation, KeyStore, KeyWrapper


def create_wallet(
    wallet_id: str,
    deriver: KeyDerivation,
    wrapper: KeyWrapper,
    store: KeyStore,
    mnemonic: str | None = None,
) -> WalletRecord:
    """A new HD wallet (idempotent by id: an existing wallet is returned unchanged).
    `mnemonic` restores a wallet from its backup words instead of generating new ones."""
    existing = store.wallet(wallet_id)
    if existing is not None:
        return existing
    seed = deriver.seed(mnemonic if mnemonic is not None else deriver.new_mnemonic())
    try:
        record = WalletRecord(
            wallet_id=wallet_id,
            wrapped_seed=wrapper.wrap(seed),
            xpubs={chain: deriver.account_xpub(seed, chain) for chain in CHAINS},
            btc_network=deriver.btc_network,
            created_at=datetime.now(UTC),
        )
    finally:
        # Python cannot scrub memory; dropping the only reference is what we can do.
        del seed
    return store.save_wallet(record)


def deposit_address(
    store: KeyStore,
    deriver: KeyDerivation,
    wallet_id: str,
    chain: Chain,
    account_id: str,
    owner: str | None,
    asset: str,
) -> AddressAssignment:
    """The client account's deposit address on `chain`, derived on first request."""
    wallet = store.wallet(wallet_id)
    if wallet is None:
        raise KeyError(f"no wallet {wallet_id}")
    xpub = wallet.xpubs[chain]
    return store.assign(
        wallet_id,
        chain,
        account_id,
        owner,
        asset,
        lambda index: deriver.address(xpub, chain, 0, index),
    )
