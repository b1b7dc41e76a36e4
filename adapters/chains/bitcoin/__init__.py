"""Bitcoin (python-bitcoinlib) against btcd's JSON-RPC."""
