"""One pseudonymisation service for the whole build: patient pseudonyms, date shifts, UIDs.

All identifiers are keyed HMAC-SHA256 digests under the deployment secret, so the same input
gives the same output across DICOM, ECG headers and report text, and across runs and runners.
Date shifts are whole days in [-3650, -1], one per patient (PS3.15 "Retain Longitudinal
Temporal Information with Modified Dates").
"""

from __future__ import annotations

import hashlib
import hmac
import importlib
import os
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

#: the secret used by ``make demo``; outputs built with it are marked as demo builds
DEMO_SECRET = "medcorpus-demo-secret-not-for-real-data"


def resolve_secret(source: str) -> str:
    """The secret named by ``source``: ``demo``, ``env:NAME`` or ``hook:module:function``.

    Workers call this when they unpickle a :class:`Pseudonymizer`: the secret itself never
    travels in task pickles, job graphs or staging (a secret-manager client is a hook).
    """
    if source == "demo":
        return DEMO_SECRET
    kind, _, name = source.partition(":")
    if kind == "env":
        return os.environ.get(name, "")
    if kind == "hook":
        module, _, func = name.rpartition(":")
        return str(getattr(importlib.import_module(module), func)())
    raise ValueError(f"unknown secret source {source!r}")


def _from_source(source: str, check: str) -> Pseudonymizer:
    secret = resolve_secret(source)
    p = Pseudonymizer(secret, source)
    if not secret or p.check != check:
        kind = source.partition(":")[0]
        raise RuntimeError(
            f"this worker's pseudonymisation secret ({kind}) is missing or differs from the driver's: "
            "set it in every worker's environment"
        )
    return p


@dataclass(frozen=True)
class Pseudonymizer:
    """Keyed pseudonyms. ``secret`` comes from config and never appears in any output.

    ``source`` says where a worker finds the secret again (``env:MEDCORPUS_SECRET``, ``demo``,
    ``hook:module:function``): a pseudonymiser with a source pickles as that reference plus a
    keyed check value, never as the secret. One without a source (tests, in-process tools)
    pickles as a plain dataclass.
    """

    secret: str = field(repr=False)
    source: str = ""

    def __reduce__(self):
        if self.source:
            return (_from_source, (self.source, self.check))
        return (Pseudonymizer, (self.secret,))

    @property
    def check(self) -> str:
        """A keyed check value: equal secrets give equal checks; it reveals nothing of the secret."""
        return self.token("secret-check", "", 16)

    def _digest(self, namespace: str, value: str) -> bytes:
        msg = f"{namespace}\x00{value}".encode()
        return hmac.new(self.secret.encode(), msg, hashlib.sha256).digest()

    def token(self, namespace: str, value: str, n_hex: int = 16) -> str:
        """Lower-case hex token (no dots) for ``value`` in ``namespace``."""
        return self._digest(namespace, value).hex()[:n_hex]

    def patient(self, raw_patient_id: str) -> str:
        """Pseudonym of a patient ID (``""`` stays ``""``: unknown patient)."""
        raw = raw_patient_id.strip()
        return "" if not raw else "p" + self.token("patient", raw)

    def study(self, raw_study_id: str) -> str:
        """Pseudonymous study key (accession, StudyInstanceUID or a link id)."""
        raw = raw_study_id.strip()
        return "" if not raw else "s" + self.token("study", raw)

    def source_id(self, relative_path: str) -> str:
        """Source ID of an input file from its path relative to the source root."""
        return "f" + self.token("source", relative_path)

    def record_id(self, source_ids: tuple[str, ...]) -> str:
        """Record ID under the worker contract: a keyed hash of the record's input units."""
        return self.token("record", "|".join(source_ids))

    def uid(self, raw_uid: str) -> str:
        """Replacement DICOM UID under the 2.25 (UUID-derived) root, stable per deployment."""
        return "2.25." + str(int.from_bytes(self._digest("uid", raw_uid.strip())[:16], "big"))

    def date_shift_days(self, patient_pseudonym: str) -> int:
        """Days to add to every date of this patient, in [-3650, -1]."""
        n = int.from_bytes(self._digest("dateshift", patient_pseudonym)[:4], "big")
        return -1 - (n % 3650)

    def shift_date(self, d: date, patient_pseudonym: str) -> date:
        return d + timedelta(days=self.date_shift_days(patient_pseudonym))

    def shift_datetime(self, dt: datetime, patient_pseudonym: str) -> datetime:
        return dt + timedelta(days=self.date_shift_days(patient_pseudonym))

    @property
    def is_demo(self) -> bool:
        return self.secret == DEMO_SECRET
