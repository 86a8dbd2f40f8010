"""The pure core: money, identities, ledger rules and the two-phase-commit state machines.

Nothing here imports Flask, pika or sqlite3 (a pure core, I/O at the edges).
"""
