"""PS3.15 de-identification: table conformance, PHI canaries, pseudonym and date-shift consistency.

The canary test rewrites real sample files with fake PHI planted in every attribute of Table
E.1-1 that pydicom's dictionary knows, in every PN/DA/DT attribute of the dictionary (listed or
not), in private tags (also nested in sequences), in sequence items and in non-ASCII names, then
runs ``decode_dicom`` (and series assembly) and scans every byte of the returned records.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import date, datetime

import pydicom
import pytest
from pydicom.datadict import DicomDictionary, dictionary_VR, keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from schemas import QuarantineError, SeriesSlice
from tests.workers.dicom.test_decode import decode, make_ctx
from workers.deid.dicom import PROFILE_MASKED, PROFILE_TABLE, _resolve, deidentify, profile_action
from workers.dicom.identity import dicom_identity
from workers.dicom.series import assemble_series

CANARY = "CANARY"
CANARY_DATE = "19230417"
CANARY_DT = "19230417112233"
CANARY_UID_ROOT = "1.2.826.0.1.3680043.10.999."
NON_ASCII = ("Müller", "Jürgen", "山田", "太郎", "Ïñtërnätiônàl")
PATIENT_NAME = "Müller^Jürgen=山田^太郎"
STRUCTURAL = {0x7FE00010, 0x00280010, 0x00280011, 0x00280100, 0x00280101, 0x00280102, 0x00280103, 0x00280004}


def _value_for(vr: str, i: int):
    """A canary value of the given VR (numbers and times are planted but not scanned for)."""
    if vr == "PN":
        return f"{CANARY}PN{i:04d}^Ïñtërnätiônàl"
    if vr in ("LO", "SH", "CS", "AE", "LT", "ST", "UT", "UC", "UR"):
        return f"{CANARY}{i:04d}"
    if vr == "DA":
        return CANARY_DATE
    if vr == "DT":
        return CANARY_DT
    if vr == "TM":
        return "112233"
    if vr == "UI":
        return f"{CANARY_UID_ROOT}{i}"
    if vr == "AS":
        return "042Y"
    if vr in ("IS", "DS"):
        return "42"
    if vr in ("US", "SS", "UL", "SL", "UV", "SV"):
        return 42
    if vr in ("FL", "FD"):
        return 42.0
    if vr in ("OB", "OW", "OF", "OD", "OL", "OV", "UN"):
        return f"{CANARY}{i:04d}".encode()
    if vr == "AT":
        return 0x00100010
    return None


def _canary_item(i: int) -> Dataset:
    item = Dataset()
    item.PersonName = f"{CANARY}SQ{i:04d}^Nested"
    item.ReferencedSOPInstanceUID = f"{CANARY_UID_ROOT}{90000 + i}"
    item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    item.TextValue = f"{CANARY}TXT{i:04d}"
    block = item.private_block(0x0029, "CANARY NESTED CREATOR", create=True)
    block.add_new(0x01, "LO", f"{CANARY}NESTEDPRIV{i:04d}")
    return item


def plant_phi(ds: Dataset) -> Dataset:
    """Plant canaries everywhere the profile (and our hardening) must clean. Returns ``ds``."""
    ds.SpecificCharacterSet = "ISO_IR 192"
    i = 0
    tags = set(PROFILE_TABLE)
    tags |= {t for t, entry in DicomDictionary.items() if entry[0] in ("PN", "DA", "DT")}
    for tag in sorted(tags):
        if tag >> 16 in (0x0000, 0x0002) or tag in STRUCTURAL:
            continue
        try:
            vr = dictionary_VR(tag).split(" or ")[0]
        except KeyError:
            continue
        i += 1
        if vr == "SQ":
            ds.add_new(tag, vr, Sequence([_canary_item(i)]))
            continue
        value = _value_for(vr, i)
        if value is not None:
            ds.add_new(tag, vr, value)
    ds.PatientName = PATIENT_NAME
    ds.PatientID = f"{CANARY}PID"
    ds.OtherPatientIDs = f"{CANARY}OPID"
    # repeating groups: curve and overlay data/comments
    ds.add_new(0x50003000, "OB", f"{CANARY}CURVE".encode())
    ds.add_new(0x60003000, "OW", f"{CANARY}OVRL".encode())
    ds.add_new(0x60004000, "LT", f"{CANARY}OVERLAYCOMMENT")
    # private tags, also with a nested private sequence holding a name
    block = ds.private_block(0x0011, f"{CANARY} CREATOR", create=True)
    block.add_new(0x01, "LO", f"{CANARY}PRIVATE")
    block.add_new(0x02, "SQ", Sequence([_canary_item(99999)]))
    # an unlisted sequence (the profile must still be applied inside it)
    ds.add_new(0x00081032, "SQ", Sequence([_canary_item(77777)]))  # ProcedureCodeSequence
    if getattr(ds, "file_meta", None) is not None:
        ds.file_meta.MediaStorageSOPInstanceUID = f"{CANARY_UID_ROOT}1"
        ds.file_meta.SourceApplicationEntityTitle = f"{CANARY}AET"
    return ds


def _needles() -> list[str]:
    return [CANARY, CANARY.lower(), CANARY_DATE, "1923-04-17", CANARY_UID_ROOT, *NON_ASCII]


def scan(obj, where: str = "record") -> list[str]:
    """Every canary found in any str/bytes reachable from ``obj`` (dataclass fields, tuples, payload)."""
    hits: list[str] = []
    needles = _needles()
    if dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            hits += scan(getattr(obj, f.name), f"{where}.{f.name}")
    elif isinstance(obj, tuple | list):
        for k, v in enumerate(obj):
            hits += scan(v, f"{where}[{k}]")
    elif isinstance(obj, str):
        for n in needles:
            if n in obj or json.dumps(n)[1:-1] in obj:
                hits.append(f"{where}: {n}")
    elif isinstance(obj, bytes | bytearray):
        for n in needles:
            for enc in ("utf-8", "latin-1", "utf-16-le"):
                try:
                    b = n.encode(enc)
                except UnicodeEncodeError:
                    continue
                if b in obj:
                    hits.append(f"{where}: {n} ({enc})")
    elif hasattr(obj, "value") and hasattr(obj, "name"):  # enums
        hits += scan(str(obj.value), where)
    return hits


def scan_dataset(ds: Dataset, where: str = "ds") -> list[str]:
    """Canaries left in any element value of a dataset (recursively)."""
    hits: list[str] = []
    for elem in ds.iterall():
        if elem.VR == "SQ":
            continue
        value = elem.value
        values = value if isinstance(value, list | tuple | pydicom.multival.MultiValue) else [value]
        for v in values:
            if isinstance(v, bytes):
                hits += [f"{where}{elem.tag}" for n in _needles() if n.encode("utf-8") in v]
            elif v is not None:
                hits += [f"{where}{elem.tag} {elem.keyword}" for n in _needles() if n in str(v)]
    return hits


SOURCES = {
    "cr": ("dicom", "dicomdir_sample", "77654033", "CR1", "6154"),  # 2D image path
    "ct_slice": ("dicom", "ct", "CT_small.dcm"),  # SeriesSlice → lone-slice image
    "enhanced": ("dicom", "ct", "eCT_Supplemental.dcm"),  # functional groups (nested sequences)
}


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_phi_canaries_never_reach_any_output(shared_data, tmp_path, source):
    ds = pydicom.dcmread(shared_data.joinpath(*SOURCES[source]))
    plant_phi(ds)
    path = tmp_path / "planted.dcm"
    ds.save_as(path)
    planted = pydicom.dcmread(path)
    assert str(planted.PatientName) == PATIENT_NAME and len(scan_dataset(planted)) > 500

    ctx = make_ctx()
    records = decode(path, ctx, "planted/rel")
    outputs = list(records)
    slices = [r for r in records if isinstance(r, SeriesSlice)]
    if slices:
        outputs += assemble_series(slices, ctx)
    assert outputs
    assert scan(outputs) == []
    # the de-identified dataset itself carries none either (all values, all sequences)
    clean, audit = deidentify(planted, ctx)
    assert scan_dataset(clean) == []
    assert scan(json.dumps(audit)) == []
    assert audit["private_tags_removed"] >= 3


def test_canary_in_quarantine_messages(shared_data, tmp_path):
    """Quarantine messages say what is wrong, not with whom (here: a filter hit)."""
    from workers.config import ImageConfig

    ds = pydicom.dcmread(shared_data.joinpath(*SOURCES["cr"]))
    plant_phi(ds)
    ds.BodyPartExamined = "CANARYBODY"  # a free-text value in a filtered attribute
    path = tmp_path / "planted.dcm"
    ds.save_as(path)
    with pytest.raises(QuarantineError) as exc:
        decode(path, make_ctx(image=ImageConfig(keep_modalities=("DX",))))
    assert scan(exc.value.message) == []


def _walk_top(ds: Dataset):
    return {int(e.tag): e for e in ds}


def test_table_actions_applied_to_every_listed_attribute(shared_data):
    """Each planted Table E.1-1 attribute is removed, emptied, dummied, replaced or shifted."""
    ds = plant_phi(pydicom.dcmread(shared_data.joinpath(*SOURCES["cr"])))
    before = _walk_top(ds)
    ctx = make_ctx()
    patient = ctx.pseudo.patient(f"{CANARY}PID")
    days = ctx.pseudo.date_shift_days(patient)
    shifted = (date(1923, 4, 17).toordinal() + days, date.fromordinal(date(1923, 4, 17).toordinal() + days))
    clean, _ = deidentify(ds, ctx)
    after = _walk_top(clean)
    checked = 0
    for tag, elem in before.items():
        row = profile_action(tag)
        if row is None or elem.tag.is_private:
            continue
        action = _resolve(*row)
        out = after.get(tag)
        kw = keyword_for_tag(tag)
        if tag in (0x00100010, 0x00100020):  # Z with the patient pseudonym as dummy
            assert str(out.value) == patient, kw
        elif action == "X":
            assert out is None, kw
        elif action == "Z":
            assert out is not None and out.value in ("", None) or len(out.value) == 0, kw
        elif action == "D":
            if out is None:  # binary values have no meaningful dummy: removed
                assert elem.VR in ("OB", "OW", "UN"), kw
            else:
                holder = Dataset()
                holder.add(out)
                assert scan_dataset(holder) == [], kw
        elif action == "U":
            assert out is not None and str(out.value).startswith("2.25."), kw
        elif action == "C" and elem.VR == "DA":
            assert out.value == shifted[1].strftime("%Y%m%d"), kw
        elif action == "C" and elem.VR == "DT":
            assert out.value == shifted[1].strftime("%Y%m%d") + CANARY_DT[8:], kw
        elif action == "C" and elem.VR == "TM":
            assert out.value == "112233", kw  # a whole-day shift keeps the time of day
        elif action == "C":
            assert out is None, kw  # malformed offset / binary timestamp: removed
        checked += 1
    assert checked > 300


def test_profile_table_file_is_the_table_the_code_used():
    """The CSV under workers/resources holds exactly the rows the code embedded before (pinned)."""
    import hashlib

    rows = sorted((t, basic, option) for t, (basic, option) in PROFILE_TABLE.items())
    assert len(rows) == 456
    assert hashlib.sha256(repr(rows).encode()).hexdigest() == (
        "85e548f3ba57612826c411198762bea36aaca457e37446401ed5fc8612cda060"
    )
    assert PROFILE_MASKED == [  # 50xx,xxxx curves; 60xx,4000 overlay comments; 60xx,3000 overlay data
        (0xFF000000, 0x50000000, "X", ""),
        (0xFF00FFFF, 0x60004000, "X", ""),
        (0xFF00FFFF, 0x60003000, "X", ""),
    ]
    assert PROFILE_TABLE[0x00100020] == ("Z", "")  # Patient ID
    assert PROFILE_TABLE[0x00080018] == ("U", "")  # SOP Instance UID
    assert PROFILE_TABLE[0x00081030] == ("X", "")  # Study Description
    assert PROFILE_TABLE[0x0008002A] == ("X/Z/D", "C")  # Acquisition DateTime
    assert 0x00180015 not in PROFILE_TABLE  # Body Part Examined: not in the table (kept)


def test_profile_table_loader_refuses_bad_rows(tmp_path):
    from workers.deid.dicom import load_profile_table

    bad = tmp_path / "t.csv"
    bad.write_text("# comment\ntag,basic,option,keyword\n0010,0010,Z,,PatientName\n", encoding="utf-8")
    with pytest.raises(ValueError):
        load_profile_table(bad)  # an unquoted tag splits into two columns
    bad.write_text('tag,basic,option,keyword\n"0010,0010",Z,,\n"0010,0010",X,,\n', encoding="utf-8")
    with pytest.raises(ValueError, match="duplicate"):
        load_profile_table(bad)


def test_table_data_is_well_formed():
    """Rows parse, actions are PS3.15 codes, tags resolve in pydicom's dictionary (most of them)."""
    assert len(PROFILE_TABLE) > 400 and len(PROFILE_MASKED) == 3
    for basic, option in PROFILE_TABLE.values():
        assert basic in {"X", "Z", "D", "U", "X/Z", "X/D", "Z/D", "X/Z/D", "X/Z/U*"}
        assert option in ("", "C")
    known = sum(keyword_for_tag(t) != "" for t in PROFILE_TABLE)
    assert known / len(PROFILE_TABLE) > 0.97
    # spot checks against the standard's table
    assert profile_action(0x00100010) == ("Z", "")  # Patient's Name
    assert profile_action(0x00100030) == ("Z", "")  # Patient's Birth Date (not shifted: removed)
    assert profile_action(0x00080020) == ("Z", "C")  # Study Date
    assert profile_action(0x0020000D) == ("U", "")  # Study Instance UID
    assert profile_action(0x00080080) == ("X/Z/D", "")  # Institution Name
    assert profile_action(0x60023000) == ("X", "")  # Overlay Data, any 60xx group
    assert profile_action(0x50101234) == ("X", "")  # Curve Data
    assert profile_action(0x00280010) is None  # Rows: not listed, kept


def test_deid_bookkeeping_and_input_untouched(shared_data):
    path = shared_data.joinpath(*SOURCES["cr"])
    ds = pydicom.dcmread(path)
    original = pydicom.dcmread(path)
    clean, audit = deidentify(ds, make_ctx())
    assert ds == original  # the input dataset is not modified
    assert clean.PatientIdentityRemoved == "YES"
    assert clean.LongitudinalTemporalInformationModified == "MODIFIED"
    codes = [(c.CodeValue, c.CodingSchemeDesignator) for c in clean.DeidentificationMethodCodeSequence]
    assert codes == [("113100", "DCM"), ("113107", "DCM")]
    assert audit["options"] == ["Retain Longitudinal Temporal Information with Modified Dates Option"]
    assert "PatientName" in audit["emptied"] and "StudyInstanceUID" in audit["uid_replaced"]
    assert clean.PixelData is ds.PixelData  # pixel bytes shared, not copied


def _records(shared_data, ctx, rels):
    out = {}
    for rel in rels:
        path = shared_data.joinpath(*rel.split("/"))
        (rec,) = decode(path, ctx, rel)
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        clean, _ = deidentify(ds, ctx)
        out[rel] = (rec, ds, clean)
    return out


def test_same_patient_same_pseudonym_and_shift_others_differ(shared_data):
    ctx = make_ctx()
    same = [
        "dicom/dicomdir_sample/77654033/CR1/6154",
        "dicom/dicomdir_sample/77654033/CR2/6247",
        "dicom/dicomdir_sample/77654033/CT2/17106",
    ]
    others = [
        "dicom/ct/CT_small.dcm",
        "dicom/mr/MR_small.dcm",
        "dicom/cxr/RG1_J2KI.dcm",
        "dicom/ct/eCT_Supplemental.dcm",
    ]
    recs = _records(shared_data, ctx, same + others)
    patients = {rel: r.patient for rel, (r, _, _) in recs.items()}
    assert len({patients[rel] for rel in same}) == 1
    assert len({patients[rel] for rel in others} | {patients[same[0]]}) == len(others) + 1
    for rel, (rec, ds, clean) in recs.items():
        days = ctx.pseudo.date_shift_days(rec.patient)
        # the dataset's dates moved by the patient's shift
        d0 = datetime.strptime(str(ds.StudyDate), "%Y%m%d").date()
        assert datetime.strptime(str(clean.StudyDate), "%Y%m%d").date() == date.fromordinal(
            d0.toordinal() + days
        ), rel
        # the record's acquired_at is the same shift applied to the original acquisition time
        p, _, acquired = dicom_identity(ds, ctx.pseudo)
        assert (p, acquired) == (rec.patient, rec.acquired_at)
        assert str(clean.PatientID) == rec.patient and str(clean.PatientName) == rec.patient
    # UIDs: same input UID → same output UID; the CR1/CR2 study UIDs agree before and after
    cr1, cr2 = recs[same[0]], recs[same[1]]
    assert (cr1[1].StudyInstanceUID == cr2[1].StudyInstanceUID) == (
        cr1[2].StudyInstanceUID == cr2[2].StudyInstanceUID
    )
    assert cr1[2].StudyInstanceUID == ctx.pseudo.uid(str(cr1[1].StudyInstanceUID))
    # another deployment secret gives other pseudonyms
    other_ctx = dataclasses.replace(ctx, pseudo=type(ctx.pseudo)("another-secret"))
    assert (
        decode(shared_data / "dicom/ct/CT_small.dcm", other_ctx)[0].patient
        != patients["dicom/ct/CT_small.dcm"]
    )


def test_date_time_values_edge_cases():
    from workers.deid.dicom import _shift_da, _shift_dt

    assert _shift_da("20000301", -1) == "20000229"
    assert _shift_da("20000101-20000110", -10) == "19991222-19991231"
    assert _shift_da("2000", -1) == ""  # unparseable: emptied rather than kept
    assert _shift_dt("20000301101010.5+0100", -1) == "20000229101010.5+0100"
    assert _shift_dt("200003", -1) == ""
