"""A bank of the Consórcio: ledger, services, REST API and two-phase-commit runtime."""
