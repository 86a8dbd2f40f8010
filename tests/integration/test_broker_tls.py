"""Banks on other machines reach the broker over TLS: ``amqps://`` URLs.

A private RabbitMQ node with a TLS listener and a certificate from a CA of the test's own: the
client connects when the CA is trusted (``SSL_CERT_FILE``) and the certificate names the URL's
host, and requests travel over it; it refuses a node whose certificate names another host, and
one signed by a CA it does not trust.
"""
from __future__ import annotations

import datetime
import shutil
import uuid
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from broker import BrokerClient
from broker.provision import delete_namespace, provision_topology
from broker.topology import Topology
from tools.consortia import free_ports
from tools.rabbit import PrivateBroker

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("rabbitmq-server") is None, reason="needs rabbitmq-server installed")]


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_pki(folder: Path) -> dict[str, Path]:
    """A CA, and a server certificate it signs for the DNS name "localhost" only."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("consorcio test CA")).issuer_name(_name("consorcio test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name("localhost")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    other_ca_key = ec.generate_private_key(ec.SECP256R1())
    other_ca = (x509.CertificateBuilder().subject_name(_name("someone else")).issuer_name(_name("someone else"))
                .public_key(other_ca_key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(other_ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    files = {"ca": folder / "ca.pem", "cert": folder / "server.pem", "key": folder / "server.key",
             "other_ca": folder / "other-ca.pem"}
    files["ca"].write_bytes(ca.public_bytes(pem))
    files["cert"].write_bytes(cert.public_bytes(pem))
    files["key"].write_bytes(key.private_bytes(pem, serialization.PrivateFormat.TraditionalOpenSSL,
                                               serialization.NoEncryption()))
    files["other_ca"].write_bytes(other_ca.public_bytes(pem))
    return files


@pytest.fixture(scope="module")
def tls_broker():
    tls_port = free_ports(1)[0]
    broker = PrivateBroker()
    pki = make_pki(broker.dir)
    broker._node.extra_conf = (f"listeners.ssl.default = 127.0.0.1:{tls_port}\n"
                               f"ssl_options.cacertfile = {pki['ca']}\nssl_options.certfile = {pki['cert']}\n"
                               f"ssl_options.keyfile = {pki['key']}\nssl_options.verify = verify_none\n")
    broker.start()
    yield broker, tls_port, pki
    broker.stop()


def connect(url: str, namespace: str, handler=None) -> BrokerClient:
    return BrokerClient(url, namespace, "beta" if handler else "alfa", handler, heartbeat=5).start()


def test_a_bank_talks_to_the_broker_over_tls_when_it_trusts_the_ca_and_the_name_matches(tls_broker, monkeypatch):
    broker, tls_port, pki = tls_broker
    namespace = f"t-{uuid.uuid4().hex[:12]}"
    provision_topology(broker.url, Topology(namespace, ("alfa", "beta")))
    monkeypatch.setenv("SSL_CERT_FILE", str(pki["ca"]))
    url = f"amqps://guest:guest@localhost:{tls_port}/%2F"
    ref = []

    def echo(d):
        ref[0].reply(d.reply_to, d.correlation_id, b"over tls: " + d.body).result(5)
        d.ack()
    beta = connect(url, namespace, echo)
    ref.append(beta)
    alfa = connect(url, namespace)
    try:
        assert beta.wait_connected(15) and alfa.wait_connected(15), (alfa.last_error, beta.last_error)
        assert alfa.node == f"localhost:{tls_port}"
        assert alfa.request("beta", b"hello", expiration_ms=5000).future.result(5) == b"over tls: hello"
    finally:
        alfa.stop()
        beta.stop()
        delete_namespace(broker.url, namespace, ["alfa", "beta"])


@pytest.mark.parametrize("case", ["certificate for another name", "CA not trusted"])
def test_a_bank_refuses_a_broker_it_cannot_verify(tls_broker, monkeypatch, case):
    broker, tls_port, pki = tls_broker
    if case == "certificate for another name":
        monkeypatch.setenv("SSL_CERT_FILE", str(pki["ca"]))
        url = f"amqps://guest:guest@127.0.0.1:{tls_port}/%2F"   # the certificate names localhost only
    else:
        monkeypatch.setenv("SSL_CERT_FILE", str(pki["other_ca"]))
        url = f"amqps://guest:guest@localhost:{tls_port}/%2F"
    client = BrokerClient(url, "nobody", "alfa", own_queue=False).start()
    try:
        assert not client.wait_connected(4)
        assert "CERTIFICATE_VERIFY_FAILED" in (client.last_error or "") or \
            "certificate" in (client.last_error or "").lower(), client.last_error
    finally:
        client.stop()
