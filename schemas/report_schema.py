"""The JSON Schema of a structured report, filled by the rule path (medspaCy) and the LLM path.

Downstream code never cares which path produced a record: both must validate against
:data:`REPORT_JSON_SCHEMA`. Bump :data:`REPORT_SCHEMA_VERSION` on any change.
"""

from __future__ import annotations

from schemas.labels import ALL_LABELS, ASSERTIONS

REPORT_SCHEMA_VERSION = "1.0"

SECTION_NAMES: tuple[str, ...] = (
    "indication",
    "history",
    "comparison",
    "technique",
    "findings",
    "impression",
    "recommendation",
    "other",
)

REPORT_JSON_SCHEMA: dict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": f"medcorpus:structured-report:{REPORT_SCHEMA_VERSION}",
    "title": "medcorpus structured report",
    "type": "object",
    "additionalProperties": False,
    "required": ["schema_version", "report_type", "language", "sections", "findings", "normal"],
    "properties": {
        "schema_version": {"type": "string", "const": REPORT_SCHEMA_VERSION},
        "report_type": {"type": "string", "enum": ["radiology", "cardiology", "other"]},
        "language": {"type": "string", "maxLength": 8},
        "sections": {
            "type": "object",
            "additionalProperties": False,
            "properties": {name: {"type": "string"} for name in SECTION_NAMES},
        },
        "findings": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["label", "assertion"],
                "properties": {
                    "label": {"type": "string", "enum": list(ALL_LABELS)},
                    "assertion": {"type": "string", "enum": list(ASSERTIONS)},
                    "section": {"type": "string", "enum": list(SECTION_NAMES)},
                    "evidence": {"type": "string", "maxLength": 200},
                },
            },
        },
        "normal": {"type": "boolean"},
    },
}
