"""What every decoder receives besides its input item."""

from __future__ import annotations

from dataclasses import dataclass, field

from workers.config import EcgConfig, ImageConfig, LimitsConfig, ReportConfig, VolumeConfig
from workers.deid.pseudonym import Pseudonymizer


@dataclass(frozen=True)
class WorkerContext:
    """Configs + the shared pseudonymisation service. Picklable (sent to worker processes)."""

    pseudo: Pseudonymizer
    image: ImageConfig = field(default_factory=ImageConfig)
    volume: VolumeConfig = field(default_factory=VolumeConfig)
    ecg: EcgConfig = field(default_factory=EcgConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
