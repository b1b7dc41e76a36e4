# An authorised auditor: may unwrap audit data keys to read payloads, and read the
# chain's public verification keys. Cannot sign, so cannot forge records.
path "transit/decrypt/custody-audit-data" {
  capabilities = ["update"]
}
path "transit/keys/custody-audit-chain" {
  capabilities = ["read"]
}
