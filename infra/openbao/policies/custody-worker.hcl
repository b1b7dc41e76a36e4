# The saga worker wraps new seeds and keeps their ciphertext in KV; it cannot unwrap.
path "transit/encrypt/custody-kek" {
  capabilities = ["update"]
}
path "kv/data/custody/*" {
  capabilities = ["create", "update", "read"]
}
path "kv/metadata/custody/*" {
  capabilities = ["read", "list"]
}
