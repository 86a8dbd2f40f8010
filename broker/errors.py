"""The broker layer's exceptions; pika's own are translated here with ``raise ... from``."""


class BrokerError(Exception):
    """Messaging failed; the caller decides what that means (for 2PC: an ABORT)."""


class NotConnected(BrokerError):
    """No connection to the broker right now (it is down, or we are reconnecting)."""


class NotSent(BrokerError):
    """The message never reached any queue: its addressee cannot have seen it."""


class Unroutable(NotSent):
    """The broker could route the message to no queue: the addressed bank has never started
    (or its queue was deleted). Published with mandatory=True, so this fails at once."""


class Rejected(NotSent):
    """The broker refused the message (a publisher-confirm nack)."""
