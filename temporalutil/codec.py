"""Payload encryption: every payload Temporal stores for us (workflow and activity inputs and
results, signals, memos, summaries, current details) is sealed with AES-256-GCM before it leaves
the process, so client data in history is unreadable without the key.

Keys come from PAYLOAD_ENCRYPTION_KEYS (comma-separated, URL-safe base64 of 32 bytes): the
first encrypts, every one decrypts, so a key is rotated by putting the new one first. Payloads
without our encoding (written before encryption was turned on) pass through unchanged.

Search attributes and workflow ids are not payloads and are never encrypted: keep personal data
and secrets out of them. Never import this module from a workflow (cryptography in the sandbox).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import DataConverter, PayloadCodec

from temporalutil.converter import DATA_CONVERTER

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
NONCE_BYTES = 12


class PayloadKeyError(ValueError):
    """A key is malformed, or a payload was sealed with a key we do not hold."""


def generate_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def parse_key(text: str) -> bytes:
    try:
        key = base64.urlsafe_b64decode(text.strip().encode())
    except (binascii.Error, ValueError) as err:
        raise PayloadKeyError("PAYLOAD_ENCRYPTION_KEYS: a key is not URL-safe base64") from err
    if len(key) != 32:
        raise PayloadKeyError(
            f"PAYLOAD_ENCRYPTION_KEYS: each key must be 32 bytes (got {len(key)}); "
            "make one with `csp codec new-key`"
        )
    return key


def key_id(key: bytes) -> str:
    """A public fingerprint of a key, stored beside each payload to pick the key to open it."""
    return hashlib.sha256(key).hexdigest()[:12]


class EncryptionCodec(PayloadCodec):
    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise PayloadKeyError("PAYLOAD_ENCRYPTION_KEYS: at least one key is needed")
        self._ciphers = {key_id(key): AESGCM(key) for key in keys}
        self._current = key_id(keys[0])

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._seal(payload) for payload in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._open(payload) for payload in payloads]

    def _seal(self, payload: Payload) -> Payload:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self._current].encrypt(nonce, payload.SerializeToString(), None)
        return Payload(
            metadata={"encoding": ENCODING, KEY_ID: self._current.encode()},
            data=nonce + sealed,
        )

    def _open(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload  # written before encryption was on
        kid = payload.metadata.get(KEY_ID, b"").decode()
        cipher = self._ciphers.get(kid)
        if cipher is None:
            raise PayloadKeyError(
                f"payload sealed with key {kid!r}, which is not in PAYLOAD_ENCRYPTION_KEYS"
            )
        try:
            plain = cipher.decrypt(payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:], None)
        except InvalidTag as err:
            raise PayloadKeyError(f"payload sealed with key {kid!r} was altered") from err
        return Payload.FromString(plain)


def codec_from_keys(keys: Sequence[str]) -> EncryptionCodec:
    """The codec for PAYLOAD_ENCRYPTION_KEYS as configured (text keys, first encrypts)."""
    return EncryptionCodec([parse_key(k) for k in keys])


def data_converter(keys: Sequence[str]) -> DataConverter:
    """The project's converter, encrypting when keys are configured."""
    if not keys:
        return DATA_CONVERTER
    return dataclasses.replace(DATA_CONVERTER, payload_codec=codec_from_keys(keys))
