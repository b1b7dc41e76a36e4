"""Cosmos SDK (simd v0.46, cosmpy's protos): staking and bank transactions, gRPC queries."""
