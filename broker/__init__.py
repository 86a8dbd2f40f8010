"""AMQP messaging for the consortium: connection, topology, publishing and RPC.

Knows RabbitMQ and nothing about money: bodies are bytes, banks are routing keys.
"""
from .client import BrokerClient, Delivery, PendingReply  # noqa: F401
from .errors import BrokerError, NotConnected, NotSent, Unroutable  # noqa: F401
from .names import Names  # noqa: F401
