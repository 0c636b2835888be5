"""CURVE keys for a bridge reachable beyond loopback.

Keys are ZeroMQ certificate files (`zmq.auth` format, Z85 text): the server reads its secret
key file; the authenticator allows exactly the public keys found in the clients directory.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from urllib.parse import urlsplit

import zmq
import zmq.auth

from .protocol import BridgeError


def is_local_endpoint(endpoint: str) -> bool:
    """True for ipc:// and inproc:// endpoints and for tcp:// on a loopback address."""
    scheme = endpoint.split("://", 1)[0]
    if scheme in ("ipc", "inproc"):
        return True
    if scheme != "tcp":
        return False
    host = urlsplit(endpoint).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def create_keys(directory: Path, name: str) -> tuple[Path, Path]:
    """Write NAME.key (public) and NAME.key_secret into directory; returns both paths."""
    directory.mkdir(parents=True, exist_ok=True)
    public, secret = zmq.auth.create_certificates(str(directory), name)
    os.chmod(secret, 0o600)
    return Path(public), Path(secret)


def load_secret_key(path: Path) -> tuple[bytes, bytes]:
    """(public, secret) from a `.key_secret` certificate file."""
    if not path.is_file():
        raise BridgeError("bad_config", f"the CURVE secret key file {path} does not exist; `tunelab bridge` creates one, or run `python -m tunelab_bridge keys DIR server`.")
    public, secret = zmq.auth.load_certificate(str(path))
    if not secret:
        raise BridgeError("bad_config", f"{path} holds no secret key; pass the server's .key_secret file, not its public .key file.")
    return public, secret


def load_client_keys(directory: Path) -> list[bytes]:
    """The public keys allowed to connect: every certificate file in directory."""
    if not directory.is_dir():
        raise BridgeError("bad_config", f"the CURVE clients directory {directory} does not exist; put each allowed client's public .key file there.")
    keys = zmq.auth.load_certificates(str(directory))
    if not keys:
        raise BridgeError("bad_config", f"the CURVE clients directory {directory} holds no public key; copy each allowed client's .key file there.")
    return list(keys.keys())


def secure_server_socket(socket: zmq.Socket, secret_key_file: Path) -> None:
    public, secret = load_secret_key(secret_key_file)
    socket.curve_secretkey = secret
    socket.curve_publickey = public
    socket.curve_server = True


def secure_client_socket(socket: zmq.Socket, client_secret_file: Path, server_public_file: Path) -> None:
    """Configure a client socket (tests, Python clients) for a CURVE server."""
    public, secret = zmq.auth.load_certificate(str(client_secret_file))
    server_public, _ = zmq.auth.load_certificate(str(server_public_file))
    socket.curve_secretkey = secret
    socket.curve_publickey = public
    socket.curve_serverkey = server_public
