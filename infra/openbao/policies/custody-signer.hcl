# The signer is the only role that may unwrap a seed (for one signature at a time).
path "transit/encrypt/custody-kek" {
  capabilities = ["update"]
}
path "transit/decrypt/custody-kek" {
  capabilities = ["update"]
}
path "kv/data/custody/*" {
  capabilities = ["read"]
}
