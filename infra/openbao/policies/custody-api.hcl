# The API may wrap (encrypt) under the key-encryption key, never unwrap.
path "transit/encrypt/custody-kek" {
  capabilities = ["update"]
}
path "kv/data/custody/public/*" {
  capabilities = ["read"]
}
