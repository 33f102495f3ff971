"""Ed25519 signatures on manifests: key pairs, signing, and verification against a pinned key.

A signature covers the manifest's canonical JSON without its signatures
(:meth:`bastion.data.manifest.Manifest.signed_bytes`), so any change to an entry, a count, the root
or the provenance invalidates it. A signature carries its public key, which proves only that *some*
key signed: a check is "trusted" only against a public key the verifier already holds (pinned).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel

from bastion.core.errors import InputError
from bastion.data.manifest import Manifest, Signature, default_creator

SignatureStatus = Literal["trusted", "valid-unpinned", "untrusted", "invalid"]


class SignatureCheck(BaseModel):
    """The verdict on one signature, with a message a user can act on."""

    signer: str
    key_id: str
    signed_at: datetime
    status: SignatureStatus
    message: str


class SignatureReport(BaseModel):
    """Every signature's verdict. ``trusted_key_id``: the pinned key checked against, if any."""

    checks: list[SignatureCheck]
    trusted_key_id: str | None = None

    @property
    def ok(self) -> bool:
        """No invalid signature and, when a key is pinned, a valid signature by that key."""
        if any(c.status == "invalid" for c in self.checks):
            return False
        return self.trusted_key_id is None or any(c.status == "trusted" for c in self.checks)

    @property
    def summary(self) -> str:
        """One line: what the signatures prove."""
        if not self.checks:
            return ("unsigned: no signature, but a trusted key was given" if self.trusted_key_id
                    else "unsigned (sign it with 'bastion data sign')")
        if not self.ok:
            if any(c.status == "invalid" for c in self.checks):
                return "INVALID signature: the manifest was changed after it was signed, or the signature is forged"
            return f"no signature by the trusted key {self.trusted_key_id[:16]}..."
        if self.trusted_key_id:
            return f"signed by the trusted key {self.trusted_key_id[:16]}..."
        return "valid but not pinned: anyone can sign with a key of their own; pass --public-key to check who signed"


def key_id(public_key: Ed25519PublicKey) -> str:
    """SHA-256 (hex) of the raw 32-byte public key."""
    return hashlib.sha256(raw_public_key(public_key)).hexdigest()


def public_key_path(private_key: Path) -> Path:
    """Where the public key of ``private_key`` lives: the same name with ``.pub`` (``release.key`` ->
    ``release.pub``)."""
    return Path(private_key).with_suffix(".pub")


def generate_key_pair(path: Path, *, overwrite: bool = False) -> tuple[Path, Path]:
    """A new ed25519 key pair: the private key (PKCS#8 PEM, unencrypted, mode 0600) at ``path`` and the
    public key (SubjectPublicKeyInfo PEM) next to it (:func:`public_key_path`). Returns both paths.

    Raises:
        InputError: either file exists (unless ``overwrite``), or the folder does not.
    """
    path = Path(path)
    public_path = public_key_path(path)
    if public_path == path:
        raise InputError(f"{path}: give the private key another name than the public key's (e.g. release.key)")
    if not path.parent.is_dir():
        raise InputError(f"cannot write {path}: the folder {path.parent} does not exist")
    if not overwrite:
        for existing in (path, public_path):
            if existing.exists():
                raise InputError(f"{existing} already exists; a lost private key cannot be recovered, so bastion "
                                 "does not overwrite keys: choose another --out, or delete the old pair first")
    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
    public_pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    _write(path, private_pem, 0o600, overwrite)
    _write(public_path, public_pem, 0o644, overwrite)
    return path, public_path


def _write(path: Path, data: bytes, mode: int, overwrite: bool) -> None:
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    fd = os.open(path, flags, mode)
    try:
        os.fchmod(fd, mode)  # the mode given to open is reduced by the umask, and ignored for an existing file
        os.write(fd, data)
    finally:
        os.close(fd)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """The ed25519 private key in the PEM file ``path`` (as written by :func:`generate_key_pair`).

    Raises:
        InputError: a missing file, or one that is not an unencrypted ed25519 private key.
    """
    data = _read_key_file(path, "private key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise InputError(f"{path} is not an unencrypted PEM private key ({exc}); create one with "
                         "'bastion data keygen'") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise InputError(f"{path} holds a {type(key).__name__}, not an ed25519 key; create one with "
                         "'bastion data keygen'")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """The ed25519 public key in the PEM file ``path`` (the ``.pub`` next to a private key).

    Raises:
        InputError: a missing file, or one that is not an ed25519 public key.
    """
    data = _read_key_file(path, "public key")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        hint = " (this is a private key: give its .pub)" if b"PRIVATE KEY" in data else ""
        raise InputError(f"{path} is not a PEM public key{hint}: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise InputError(f"{path} holds a {type(key).__name__}, not an ed25519 public key")
    return key


def _read_key_file(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise InputError(f"{what} not found: {path}") from None
    except OSError as exc:
        raise InputError(f"cannot read the {what} {path}: {exc.strerror or exc}") from exc


def sign_manifest(manifest: Manifest, private_key: Ed25519PrivateKey, *, signer: str | None = None) -> Manifest:
    """A copy of ``manifest`` with a signature by ``private_key`` added (replacing an older one by the same
    key). ``signer``: a name for people, default ``user@host``."""
    public = private_key.public_key()
    signature = Signature(
        signer=signer or default_creator(),
        key_id=key_id(public),
        public_key=base64.b64encode(raw_public_key(public)).decode("ascii"),
        signed_at=datetime.now(UTC),
        signature=base64.b64encode(private_key.sign(manifest.signed_bytes())).decode("ascii"),
    )
    others = [s for s in manifest.signatures if s.key_id != signature.key_id]
    return manifest.model_copy(update={"signatures": [*others, signature]})


def verify_signatures(manifest: Manifest, *, trusted_key: Ed25519PublicKey | None = None) -> SignatureReport:
    """Check every signature of ``manifest``; with ``trusted_key``, also whether one is by that key."""
    trusted = key_id(trusted_key) if trusted_key is not None else None
    payload = manifest.signed_bytes()
    return SignatureReport(checks=[_check(s, payload, trusted) for s in manifest.signatures], trusted_key_id=trusted)


def _check(signature: Signature, payload: bytes, trusted: str | None) -> SignatureCheck:
    def verdict(status: SignatureStatus, message: str) -> SignatureCheck:
        return SignatureCheck(signer=signature.signer, key_id=signature.key_id, signed_at=signature.signed_at,
                              status=status, message=message)

    try:
        raw = base64.b64decode(signature.public_key, validate=True)
        public = Ed25519PublicKey.from_public_bytes(raw)
        signed = base64.b64decode(signature.signature, validate=True)
    except (binascii.Error, ValueError):
        return verdict("invalid", "the signature or its public key is not valid base64 ed25519 data")
    if hashlib.sha256(raw).hexdigest() != signature.key_id:
        return verdict("invalid", "the key id does not match the public key it is recorded with")
    try:
        public.verify(signed, payload)
    except InvalidSignature:
        return verdict("invalid", "signature does not match the manifest: it was changed after it was signed "
                       "(or the signature was forged)")
    if trusted is None:
        return verdict("valid-unpinned", "valid, but not pinned: checked only against the key the signature "
                       "carries; pass the signer's public key to know who signed")
    if signature.key_id == trusted:
        return verdict("trusted", "valid, by the trusted key")
    return verdict("untrusted", "valid, but by another key than the trusted one")


def raw_public_key(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
