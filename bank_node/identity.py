"""Who is who on the broker: the URL a bank connects with, and the user each principal's
messages must carry (every handler checks the sender)."""
from __future__ import annotations

import os
from pathlib import Path

from broker.provision import load_passwords, user_of, username_in, with_credentials
from broker.errors import BrokerError
from .config import ConfigError, ConsortiumConfig

AUDITOR = "auditor"


def expected_user(config: ConsortiumConfig, principal: str) -> str:
    if config.broker_auth.mode == "per_bank":
        return user_of(config.consortium, principal)
    return username_in(config.broker_url)


def broker_url_for(config: ConsortiumConfig, principal: str, env: dict | None = None) -> str:
    """The broker URL with this bank's own credentials (per_bank), or the shared one; for a
    cluster, every node's URL, separated by commas."""
    env = os.environ if env is None else env
    if config.broker_auth.mode != "per_bank":
        return config.broker_url
    password = env.get("CONSORCIO_BROKER_PASSWORD")
    if not password and config.broker_auth.secrets_file:
        try:
            password = load_passwords(Path(config.broker_auth.secrets_file)).get(principal)
        except BrokerError as e:
            raise ConfigError(str(e)) from e
    if not password:
        raise ConfigError(f"no broker password for {principal!r}: set CONSORCIO_BROKER_PASSWORD, or name a "
                          "broker_auth.secrets_file (the launcher creates one with development passwords)")
    return ",".join(with_credentials(url, user_of(config.consortium, principal), password)
                    for url in config.broker_urls)
