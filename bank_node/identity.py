"""Who is who on the broker: the URL a bank connects with, and the user each principal's
messages must carry (every handler checks the sender), and the keys that sign them."""
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


SIGNING_KEY_ENV = "CONSORCIO_SIGNING_KEY"


def keyring_for(config: ConsortiumConfig, principal: str, env: dict | None = None):
    """This bank's signing key and every member's public key, or None when the consortium does
    not sign (``signing.mode: off``). A missing or unreadable key is a ConfigError naming it."""
    from .interbank.signing import BadKey, Keyring
    if config.signing.mode != "required":
        return None
    env = os.environ if env is None else env
    folder = Path(config.signing.keys_dir) if config.signing.keys_dir else None

    def read(path: Path | None, what: str) -> str:
        if path is None:
            raise ConfigError(f"signing: no {what} (set it in consorcio.yml or name a signing.keys_dir)")
        try:
            return path.read_text().strip()
        except OSError as e:
            raise ConfigError(f"signing: cannot read {what} at {path}: {e.strerror}") from e

    publics = {}
    for b in config.banks:
        publics[b.id] = b.public_key or read(folder / f"{b.id}.pub" if folder else None, f"public key of bank {b.id}")
    private = None
    if principal in config.bank_ids:
        private = env.get(SIGNING_KEY_ENV) or read(folder / f"{principal}.key" if folder else None,
                                                   f"signing key of bank {principal} ({SIGNING_KEY_ENV})")
    try:
        return Keyring(private, publics)
    except BadKey as e:
        raise ConfigError(f"signing: {e}") from e
