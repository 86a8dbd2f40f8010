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
    """The broker refused the message (a publisher-confirm nack): the addressee's queue is full
    (its length limit refuses new messages) or the broker could not store it."""


class TooLarge(NotSent):
    """The message is bigger than the consortium's limit; it was not sent (every bank refuses
    such a message unread, and the broker where we configure it refuses it too)."""


class Unconfirmed(BrokerError):
    """The message was handed to the broker, but the connection was lost before the broker
    confirmed it: it may or may not have reached its queue. Not ``NotSent``: the addressee may
    have it (for a PREPARE, the participant may have prepared and will ask for the outcome)."""


class ProvisioningError(BrokerError):
    """The broker's exchanges, queues or users cannot be set up as the consortium needs them;
    the message says which object and what to do."""
