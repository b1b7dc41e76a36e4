# The audit writer: a fresh data key per batch (it sees the plaintext key once, to
# encrypt), a signature over each batch's chain head. It cannot decrypt old records.
path "transit/datakey/plaintext/custody-audit-data" {
  capabilities = ["update"]
}
path "transit/sign/custody-audit-chain" {
  capabilities = ["update"]
}
path "transit/keys/custody-audit-chain" {
  capabilities = ["read"]
}
