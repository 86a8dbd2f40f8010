"""Every exchange and queue lives under the consortium's name, so several consortia (and
every test) can share one broker without seeing each other's messages."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Names:
    namespace: str

    @property
    def exchange(self) -> str:
        """Direct exchange: routing key = bank id -> that bank's durable queue."""
        return f"{self.namespace}.banks"

    @property
    def dead_letter_exchange(self) -> str:
        return f"{self.namespace}.dlx"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.namespace}.dead"

    def bank_queue(self, bank_id: str) -> str:
        return f"{self.namespace}.bank.{bank_id}"
