"""What the data is: typed records, their Arrow schemas, reason codes and the shard contract.

No I/O and no heavy dependencies live here (pyarrow is imported lazily by ``schemas.arrow``),
with one exception: ``schemas.atomic``, the project's one atomic file write, sits here because
this is the one package workers, pipelines and the trainer may all import. ``schemas.canonical``
is the one canonical JSON encoding. Both the pipeline (writer) and the trainer (reader) import
this package.
"""

from schemas.modality import Modality
from schemas.reasons import QuarantineError, ReasonCode
from schemas.records import (
    EcgRecord,
    ImageRecord,
    InputItem,
    InputKind,
    LabsRecord,
    QuarantineRecord,
    ReportRecord,
    SampleRecord,
    SeriesSlice,
    ShardRecord,
    VolumeRecord,
)

__all__ = [
    "EcgRecord",
    "ImageRecord",
    "InputItem",
    "InputKind",
    "LabsRecord",
    "Modality",
    "QuarantineError",
    "QuarantineRecord",
    "ReasonCode",
    "ReportRecord",
    "SampleRecord",
    "SeriesSlice",
    "ShardRecord",
    "VolumeRecord",
]
