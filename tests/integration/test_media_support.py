"""Helpers for the media tests (no tests here): clips re-encoded from the shared media
with PyAV, and a loopback HTTPS server with a self-signed certificate."""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import functools
import ipaddress
import os
import shutil
import ssl
import tempfile
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from tests.support import MEDIA, live_server

_CACHE = Path(tempfile.gettempdir()) / f"callboard-test-media-{os.getuid()}"


@functools.cache
def clip(seconds: float, *, codec: str = "libx264", size: int = 160, fps: int = 24) -> Path:
    """A clip of ``seconds`` made by re-encoding (and looping) driving_short.mp4."""
    _CACHE.mkdir(parents=True, exist_ok=True)
    target = _CACHE / f"clip-{seconds:g}s-{codec}-{size}-{fps}.mp4"
    if target.exists():
        return target
    frames_needed = round(seconds * fps)
    source_frames = []
    with av.open(str(MEDIA / "driving_short.mp4")) as src:
        for frame in src.decode(video=0):
            source_frames.append(frame.reformat(width=size, height=size, format="yuv420p"))
            if len(source_frames) >= 60:
                break
    tmp = target.with_suffix(".part.mp4")
    with av.open(str(tmp), mode="w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"preset": "ultrafast"}
        for i in range(frames_needed):
            frame = source_frames[i % len(source_frames)]
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    os.replace(tmp, target)
    return target


@functools.cache
def self_signed() -> tuple[Path, Path]:
    """A certificate for localhost/127.0.0.1 and its key, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory = Path(tempfile.mkdtemp(prefix="callboard-tls-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)  # the key is not left behind
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def client_context() -> ssl.SSLContext:
    """An SSL context trusting only the test certificate."""
    cert_path, _ = self_signed()
    return ssl.create_default_context(cafile=str(cert_path))


@contextlib.contextmanager
def tls_server(app: Any) -> Iterator[str]:
    """Serve ``app`` over HTTPS on 127.0.0.1; yields ``https://localhost:<port>``."""
    cert_path, key_path = self_signed()
    with live_server(
        app, host_name="localhost", lifespan="off", ssl_certfile=str(cert_path), ssl_keyfile=str(key_path)
    ) as url:
        yield url
