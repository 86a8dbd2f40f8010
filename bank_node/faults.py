"""Named crash points for fault-injection tests (issue: no fault loses a cent).

Off unless the environment names them: ``CONSORCIO_CRASH_AT=coordinator.after_commit_durable``
(comma-separated for several). When the process reaches an armed point it dies at once with
SIGKILL, exactly as a power cut would leave it: no finally blocks, no flush, no goodbye.
"""
from __future__ import annotations

import os
import signal
import sys

POINTS = (
    "coordinator.before_prepare",          # transfer recorded, no PREPARE sent
    "coordinator.after_some_prepares",     # one PREPARE sent, the others not
    "coordinator.before_decision_durable", # every vote YES, decision not yet written
    "coordinator.after_commit_durable",    # COMMIT written, nothing sent
    "coordinator.after_some_decisions",    # COMMIT sent to one participant only
    "coordinator.mid_group_commit",        # a decision written after other units of its group commit, none committed
    "participant.before_prepare_durable",  # PREPARE received, hold not yet committed
    "participant.after_prepare_durable",   # hold durable, vote not sent
    "participant.before_commit_applied",   # COMMIT received, not yet applied
    "participant.after_commit_applied",    # applied, acknowledgement not sent
    "participant.mid_decision_batch",      # half of an envelope of decisions applied, not committed
)

_armed = frozenset(p for p in os.environ.get("CONSORCIO_CRASH_AT", "").split(",") if p)
_unknown = _armed - set(POINTS)
if _unknown:
    raise SystemExit(f"CONSORCIO_CRASH_AT names unknown crash points: {', '.join(sorted(_unknown))}")


def armed(name: str) -> bool:
    return name in _armed


def crash_point(name: str) -> None:
    if name in _armed:
        sys.stderr.write(f"CRASH POINT {name}: killing myself with SIGKILL\n")
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)
