"""Pseudonyms: salted HMAC-SHA256 of source identifiers, namespaced by dataset and kind.

The salt comes from the config (demo only) or an environment variable (real sites) and is
never written to results; without it nobody can map a pseudonym back to a patient id.
"""

from __future__ import annotations

import hashlib
import hmac
import os

PREFIX = {"patient": "P", "study": "S", "series": "R", "volume": "V", "accession": "A", "frame": "F",
          "scan": "C"}


class SaltError(ValueError):
    """No salt configured: pseudonyms would be guessable, so nothing runs."""


def resolve_salt(privacy: dict) -> bytes:
    """The config's salt if set, else the environment variable named by ``salt_env``."""
    salt = privacy.get("salt") or os.environ.get(privacy.get("salt_env", "CTVLP_SALT"), "")
    if not salt:
        raise SaltError(f"no pseudonymization salt: set privacy.salt or export {privacy.get('salt_env')}")
    return salt.encode()


class Pseudonymizer:
    """Callable ``(dataset, kind, value) -> 'P3fa2...'``; an empty value stays empty (missing)."""

    def __init__(self, salt: bytes, length: int = 16):
        self._salt = salt
        self._length = length

    def __call__(self, dataset: str, kind: str, value: str) -> str:
        if value is None or str(value).strip() == "":
            return ""
        msg = f"{dataset}|{kind}|{str(value).strip()}".encode()
        digest = hmac.new(self._salt, msg, hashlib.sha256).hexdigest()[: self._length]
        return PREFIX.get(kind, "X") + digest
