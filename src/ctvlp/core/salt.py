"""The pseudonymization salt around the workflow: present before any job, never written, and the same salt
from ingestion to the text stage.

The salt itself is read by ``ctvlp.core.ids.resolve_salt`` (config ``privacy.salt``, demo only, or the variable
named by ``privacy.salt_env``). What may be written is its *fingerprint*: HMAC-SHA256 of a fixed text keyed by
the salt, 12 hex digits. It reveals no more than any pseudonym in the results (both are HMACs under the salt),
it is the rules' ``SALT_ID`` param (a new salt reruns them) and it is stored with the DICOM index
(``salt_check`` in ``dicom_index.json``) so that a later step, or the next run's parse, can tell that the
pseudonyms it makes no longer match the index's.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from ctvlp.core.ids import SaltError, resolve_salt

CHECK_KEY = "salt_check"  # the key of the fingerprint in the index summary (and in each part's counts)
_MESSAGE = b"ctvlp salt fingerprint"


def fingerprint(salt: bytes) -> str:
    """The salt's check value: HMAC-SHA256 of a fixed text keyed by the salt, 12 hex digits."""
    return hmac.new(salt, _MESSAGE, hashlib.sha256).hexdigest()[:12]


def salt_problem(privacy: Mapping, environ: Mapping[str, str] | None = None) -> str | None:
    """Why no pseudonym can be made (no salt in ``privacy.salt`` nor in the variable ``privacy.salt_env``), or
    None. A configuration error: the workflow raises it while parsing, before any job (dry runs included)."""
    environ = os.environ if environ is None else environ
    if privacy.get("salt") or environ.get(privacy.get("salt_env") or "CTVLP_SALT"):
        return None
    return (f"privacy: no pseudonymization salt: export {privacy.get('salt_env') or 'CTVLP_SALT'} (privacy.salt_env) "
            "before running; privacy.salt in a config file is for the demo only")


def current_fingerprint(privacy: Mapping) -> str | None:
    """The fingerprint of the salt this process would use, None without a salt."""
    try:
        return fingerprint(resolve_salt(dict(privacy)))
    except SaltError:
        return None


def merged_check(part_counts: Iterable[Mapping]) -> str | None:
    """The one fingerprint of the index parts (each part's job writes its own); parts made with different salts
    cannot form one index."""
    checks = {c.get(CHECK_KEY) for c in part_counts}
    if len(checks) > 1:
        raise SaltError(f"the index parts were made with different salts (fingerprints {sorted(map(str, checks))}):"
                        " rerun the index with one salt")
    return next(iter(checks), None)


def stored_check(summary_path: str | Path) -> str | None:
    """The fingerprint stored with the DICOM index (None for an index written before it was stored, or none)."""
    try:
        return json.loads(Path(summary_path).read_text()).get(CHECK_KEY)
    except (OSError, ValueError):
        return None


def salt_changed(stored: str | None, current: str | None, where: str | Path) -> str | None:
    """One line when the salt differs from the one the index at ``where`` was made with, else None."""
    if not stored or not current or stored == current:
        return None
    return (f"the salt changed since ingestion: {where} was made with a salt of fingerprint {stored}, the salt "
            f"now set gives {current}, so no pseudonym made now matches the index (restore the salt, or re-ingest "
            "with the new one)")
