"""The custody ledger on SQL: SQLite (embedded default) and PostgreSQL, Alembic migrations."""
