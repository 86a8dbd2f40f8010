"""Envelope signatures: what a bank accepts as signed by another.

The keys are raw 32-byte Ed25519 keys in base64 (RFC 8032). Keys made by another Ed25519
library (``cryptography``, which signed before) must keep working: a consortium's published
keys and the evidence already stored do not change with the library that checks them.
"""
from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from bank_node.interbank.signing import BadKey, Keyring, new_key, public_of, write_key_pair

BODY = b'{"v":2,"ns":"c","sender":"alfa","items":[]}'


def other_library_pair() -> tuple[Ed25519PrivateKey, str, str]:
    k = Ed25519PrivateKey.generate()
    private = base64.b64encode(k.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())).decode()
    public = base64.b64encode(k.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()
    return k, private, public


def test_a_signature_verifies_for_its_bank_only_and_only_on_its_body():
    (a_priv, a_pub), (b_priv, b_pub) = new_key(), new_key()
    alfa = Keyring(a_priv, {"alfa": a_pub, "beta": b_pub})
    sig = alfa.sign(BODY)
    assert alfa.verify("alfa", BODY, sig)
    assert not alfa.verify("beta", BODY, sig)                 # claimed by another bank
    assert not alfa.verify("alfa", BODY + b" ", sig)          # another body
    assert not alfa.verify("gama", BODY, sig)                 # a bank without a key here
    assert alfa.headers(BODY) == {"sig": sig}                 # deterministic: the same body, the same signature


@pytest.mark.parametrize("bad", [None, "", "not base64!", base64.b64encode(b"short").decode(),
                                 base64.b64encode(b"\0" * 64).decode(), "A" * 201])
def test_a_malformed_signature_is_refused_not_raised(bad):
    priv, pub = new_key()
    assert Keyring(priv, {"alfa": pub}).verify("alfa", BODY, bad) is False


def test_keys_and_signatures_of_the_previous_library_still_work_both_ways():
    k, private, public = other_library_pair()
    ours = Keyring(private, {"alfa": public})
    assert public_of(private) == public
    assert ours.verify("alfa", BODY, base64.b64encode(k.sign(BODY)).decode())
    assert ours.sign(BODY) == base64.b64encode(k.sign(BODY)).decode()
    k.public_key().verify(base64.b64decode(ours.sign(BODY)), BODY)   # raises if it did not verify


def test_a_key_of_the_wrong_size_is_refused_at_start(tmp_path):
    with pytest.raises(BadKey):
        Keyring(base64.b64encode(b"x" * 31).decode(), {})
    with pytest.raises(BadKey):
        Keyring(None, {"alfa": "not base64!"})
    pub = write_key_pair(tmp_path, "alfa")
    assert public_of((tmp_path / "alfa.key").read_text()) == pub
    assert oct((tmp_path / "alfa.key").stat().st_mode & 0o777) == "0o600"
