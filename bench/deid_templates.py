"""Phrasing templates and protected clinical controls of the text de-identification benchmark.

Templates are split once, by hand, into ``DEV`` (rules and the token model are tuned and trained
on these only) and ``TEST`` (reported, never tuned on). Slots in braces are filled by
``bench/deid_corpus.py`` with surrogate values; every value format (name order and casing, date
formats, ...) is drawn in both splits, the *phrasings* differ. ``{CONTROL}`` marks where a
protected clinical term goes in the control carriers.

Slot types: PATIENT, CLINICIAN, ODDNAME (identifier-shaped name), DATE, YLDATE (date without a
year), TIME, AGE, PHONE, FAX, EMAIL, URL, MRN, ACC, ACCOUNT, SSN, LICENSE, DEVICE, STREET, CITY,
STATE (not identifying under Safe Harbor), ZIP, INST.
"""

from __future__ import annotations

# (template id, language, text). English text goes into Indiana/PTB-XL English sentences, German
# into PTB-XL German ones.
DEV: tuple[tuple[str, str, str], ...] = (
    ("d-en-01", "en", "Findings called to {CLINICIAN}, RN at {TIME} on {DATE}."),
    ("d-en-02", "en", "Results discussed with {CLINICIAN} by telephone at {TIME}."),
    ("d-en-03", "en", "Critical result communicated to {CLINICIAN}."),
    ("d-en-04", "en", "Electronically signed by: {CLINICIAN}, MD {DATE} {TIME}"),
    ("d-en-05", "en", "{PATIENT} is a {AGE} year old man with dyspnea."),
    ("d-en-06", "en", "Patient {ODDNAME} (MRN {MRN}) seen today."),
    ("d-en-07", "en", "Comparison: {YLDATE}."),
    ("d-en-08", "en", "Comparison study dated {DATE}."),
    ("d-en-09", "en", "Name: {PATIENT}  DOB: {DATE}"),
    ("d-en-10", "en", "{PATIENT}, {AGE}-year-old female, referred by Dr. {CLINICIAN}."),
    ("d-en-11", "en", "MRN: {MRN}  Acc: {ACC}"),
    ("d-en-12", "en", "Acc {ACC} performed at {INST}."),
    ("d-en-13", "en", "Account number {ACCOUNT}; SSN {SSN}."),
    ("d-en-14", "en", "Please call {PHONE} with questions."),
    ("d-en-15", "en", "Fax report to {FAX}."),
    ("d-en-16", "en", "Contact {EMAIL} or see {URL}."),
    ("d-en-17", "en", "Pacemaker serial number {DEVICE} interrogated."),
    ("d-en-18", "en", "Patient lives at {STREET}, {CITY}, {STATE} {ZIP}."),
    ("d-en-19", "en", "Transferred from {INST} on {DATE}."),
    ("d-en-20", "en", "Patient is {AGE} yrs old."),
    ("d-en-21", "en", "The patient, a {AGE}-year-old, was seen at {TIME}."),
    ("d-en-22", "en", "Physician license {LICENSE}."),
    ("d-en-23", "en", "{CLINICIAN}, PA was notified."),
    ("d-en-24", "en", "Dictated by {CLINICIAN} {DATE}."),
    ("d-en-25", "en", "Mr. {PATIENT} returns from {CITY} for follow-up."),
    ("d-en-26", "en", "Home address: {STREET}, {CITY}."),
    ("d-en-27", "en", "Exam performed {DATE} at {TIME}."),
    ("d-en-28", "en", "Lead placement checked by {CLINICIAN}."),
    ("d-en-29", "en", "{CLINICIAN} reviewed the images with Dr. {CLINICIAN}."),
    ("d-en-30", "en", "SSN: {SSN}; insurance account {ACCOUNT}"),
    ("d-en-31", "en", "Accession number {ACC} (device ID {DEVICE})."),
    ("d-en-32", "en", "Reached {CLINICIAN} at {PHONE}."),
    ("d-en-33", "en", "Seen in the {INST} emergency department."),
    ("d-en-34", "en", "Interpreted by {CLINICIAN}."),
    ("d-en-35", "en", "{PATIENT} was admitted {DATE}."),
    ("d-de-01", "de", "Befundet von Dr. {CLINICIAN} am {DATE} um {TIME}."),
    ("d-de-02", "de", "Patient {PATIENT}, {AGE} Jahre, zur Kontrolle."),
    ("d-de-03", "de", "Rücksprache mit {CLINICIAN} erfolgt."),
    ("d-de-04", "de", "Überweisung durch {INST}, Tel. {PHONE}."),
    ("d-de-05", "de", "Pat.-Nr. {MRN}, Fallnummer {ACCOUNT}"),
    ("d-de-06", "de", "Wohnhaft {STREET}, {ZIP} {CITY}."),
    ("d-de-07", "de", "Vorbefund vom {DATE}."),
    ("d-de-08", "de", "Patientin {PATIENT} ({AGE}-jährig)."),
    ("d-de-09", "de", "Schrittmacher Seriennummer {DEVICE}."),
    ("d-de-10", "de", "Vidiert: {CLINICIAN}"),
    ("d-de-11", "de", "Aufnahme im {INST} am {YLDATE} um {TIME}."),
    ("d-de-12", "de", "Fax: {FAX}, E-Mail: {EMAIL}"),
    ("d-en-36", "en", "Spouse {PATIENT} present; patient is {AGE}."),
    ("d-en-37", "en", "Age: {AGE}. Sex: F. Referring: {CLINICIAN}"),
    ("d-en-38", "en", "{CLINICIAN} (cardiology) was paged at {TIME}."),
    ("d-en-39", "en", "Pt {PATIENT} tolerated the procedure."),
    ("d-en-40", "en", "Attending physician: {CLINICIAN}; resident: {CLINICIAN}"),
    ("d-en-41", "en", "A {AGE} yo nursing home resident from {CITY}."),
    ("d-en-42", "en", "Mailing address {STREET}, {CITY}, {STATE} {ZIP}"),
    ("d-en-43", "en", "Recommend follow-up with {CLINICIAN} at {INST}."),
    ("d-en-44", "en", "Study date {DATE}; time {TIME}."),
    ("d-en-45", "en", "MR# {MRN} / Acct# {ACCOUNT} / SSN# {SSN}"),
    ("d-en-46", "en", "Implanted loop recorder, model/serial {DEVICE}."),
    ("d-en-47", "en", "Discussed with the patient's son {PATIENT} at {PHONE}."),
    ("d-en-48", "en", "{PATIENT} ({AGE} y) denies chest pain."),
    ("d-en-49", "en", "Pager {PHONE}. Cell {PHONE}."),
    ("d-en-50", "en", "Nursing license {LICENSE} verified by {CLINICIAN}."),
    ("d-de-13", "de", "Der {AGE}jährige Patient {PATIENT} wurde am {DATE} aufgenommen."),
    ("d-de-14", "de", "Mit freundlichen Grüßen, {CLINICIAN}"),
    ("d-de-15", "de", "Zuweisender Arzt: Dr. {CLINICIAN}, {INST}"),
    ("d-de-16", "de", "Versichertennummer {ACCOUNT}, geb. am {DATE}"),
    ("d-de-17", "de", "Telefonische Befundmitteilung an {CLINICIAN} um {TIME}."),
    ("d-en-51", "en", "Lifelong {CITY} resident, lives alone at {STREET}."),
    ("d-en-52", "en", "Born in {CITY}; moved to {CITY} in 1990."),
    ("d-en-53", "en", "Home: {STREET} {CITY} {STATE} {ZIP}"),
    ("d-en-54", "en", "{AGE}-yr-old with syncope; daughter {PATIENT} at bedside."),
    ("d-en-55", "en", "The patient ({AGE}) and her son {PATIENT} were informed."),
    ("d-en-56", "en", "Per chart, patient age is {AGE}; lives in {CITY} near {INST}."),
    ("d-en-57", "en", "{PATIENT}, a {AGE} yr old veteran, seen by {CLINICIAN}."),
    ("d-en-58", "en", "Outside report by {CLINICIAN} ({INST}, {CITY}) dated {DATE}."),
    ("d-en-59", "en", "Message left for {PATIENT} at {PHONE} on {DATE} at {TIME}."),
    ("d-en-60", "en", "{CLINICIAN} and {CLINICIAN} performed the study."),
    ("d-de-18", "de", "{AGE}-jährige aus {CITY}, wohnhaft {STREET}."),
    ("d-de-19", "de", "Angehörige: {PATIENT} (Tochter), Tel. {PHONE}"),
    ("d-de-20", "de", "Pat. {PATIENT} kommt aus {CITY} zur Verlaufskontrolle."),
    # round 2 (dev only): the failure patterns in phrasings the token model was not trained
    # on at first (untitled names, names before a verb, coordinated names, relatives, closings)
    ("d-en-61", "en", "Critical findings were relayed by phone to {CLINICIAN} at {TIME}."),
    ("d-en-62", "en", "Dr. {CLINICIAN} is aware of the result."),
    ("d-en-63", "en", "{CLINICIAN}, MD, reviewed the tracing on {DATE}."),
    ("d-en-64", "en", "Case discussed with {CLINICIAN} of the {INST} stroke team."),
    ("d-en-65", "en", "{PATIENT} complains of palpitations since {DATE}."),
    ("d-en-66", "en", "{PATIENT} underwent CABG at {INST} in 2009."),
    ("d-en-67", "en", "Daughter ({PATIENT}) requests a copy; phone {PHONE}."),
    ("d-en-68", "en", "Spoke to {CLINICIAN} in the emergency room at {TIME}."),
    ("d-en-69", "en", "Findings texted to {CLINICIAN} via secure chat."),
    ("d-en-70", "en", "Sonographer: {CLINICIAN}   Reading physician: {CLINICIAN}"),
    ("d-en-71", "en", "{CLINICIAN} RN at bedside during the exam."),
    ("d-en-72", "en", "Ordering provider {CLINICIAN} ({PHONE})."),
    ("d-en-73", "en", "Thank you for referring {PATIENT}."),
    ("d-en-74", "en", "Seen with {CLINICIAN}, cardiology attending."),
    ("d-en-75", "en", "Prior study {DATE} from {INST} not available."),
    ("d-en-76", "en", "Comparison {YLDATE} and {DATE}."),
    ("d-en-77", "en", "Exam date: {DATE}   Exam time: {TIME}"),
    ("d-en-78", "en", "Patient is a {AGE} y.o. male from {CITY}, {STATE}."),
    ("d-en-79", "en", "Pt is {AGE} years of age."),
    ("d-en-80", "en", "Follow-up at {INST} in {CITY} recommended."),
    ("d-en-81", "en", "Returned to {CITY} after the procedure."),
    ("d-en-82", "en", "Lives on {STREET}; zip code {ZIP}."),
    ("d-en-83", "en", "Ref. no. {ACC}, patient ID {MRN}."),
    ("d-en-84", "en", "Social Security #: {SSN}"),
    ("d-en-85", "en", "Insurance member ID {ACCOUNT}."),
    ("d-en-86", "en", "Defibrillator (serial {DEVICE}) checked."),
    ("d-en-87", "en", "Provider NPI/license {LICENSE}."),
    ("d-en-88", "en", "Contact the reading room at {PHONE} or {EMAIL}."),
    ("d-en-89", "en", "Images available at {URL}."),
    ("d-en-90", "en", "{PATIENT}'s wife reports syncope at {TIME} this morning."),
    ("d-en-91", "en", "{CLINICIAN} from {INST} called with the results."),
    ("d-en-92", "en", "I have reviewed the images with {CLINICIAN}."),
    ("d-en-93", "en", "Attestation: I, {CLINICIAN}, have reviewed this study."),
    ("d-en-94", "en", "Admitted to {INST} on {DATE} at {TIME}."),
    ("d-en-95", "en", "{AGE} year-old female, resident of {CITY}."),
    ("d-en-96", "en", "Nurse {CLINICIAN} assisted."),
    ("d-en-97", "en", "Handed over to {CLINICIAN} at shift change at {TIME}."),
    ("d-en-98", "en", "Mr {PATIENT} was brought in by his wife {PATIENT}."),
    ("d-de-21", "de", "Befund mit {CLINICIAN} besprochen."),
    ("d-de-22", "de", "Frau Dr. {CLINICIAN} wurde um {TIME} informiert."),
    ("d-de-23", "de", "{PATIENT} klagt seit {DATE} über Schwindel."),
    ("d-de-24", "de", "Untersuchung am {DATE} um {TIME} im {INST}."),
    ("d-de-25", "de", "Hausarzt: {CLINICIAN}, {CITY}, Tel. {PHONE}"),
    ("d-de-26", "de", "Der Patient ist {AGE} Jahre alt und wohnt in {CITY}."),
    ("d-de-27", "de", "Geb.-Datum {DATE}; Aufnahmenummer {MRN}"),
    ("d-de-28", "de", "Schrittmacherkontrolle, Gerät SN {DEVICE}, in der {INST}."),
    ("d-de-29", "de", "Weiterleitung an {CLINICIAN} per Fax {FAX}."),
    ("d-de-30", "de", "Sohn {PATIENT} wurde telefonisch informiert."),
    ("d-de-31", "de", "{CLINICIAN}, Oberarzt Kardiologie"),
)

TEST: tuple[tuple[str, str, str], ...] = (
    ("t-en-01", "en", "Preliminary read relayed to {CLINICIAN}, NP at {TIME}."),
    ("t-en-02", "en", "These findings were conveyed to {CLINICIAN} on {DATE}."),
    ("t-en-03", "en", "Case reviewed with attending {CLINICIAN}."),
    ("t-en-04", "en", "Report finalized by {CLINICIAN} on {DATE} {TIME}."),
    ("t-en-05", "en", "{PATIENT} presents with chest pain."),
    ("t-en-06", "en", "Patient {ODDNAME} arrived for ECG."),
    ("t-en-07", "en", "Prior exam of {YLDATE} reviewed."),
    ("t-en-08", "en", "Compared to radiographs from {DATE}."),
    ("t-en-09", "en", "Patient name: {PATIENT}; date of birth {DATE}"),
    ("t-en-10", "en", "Mrs. {PATIENT} ({AGE} years) from {CITY}."),
    ("t-en-11", "en", "Medical record number {MRN}, accession {ACC}."),
    ("t-en-12", "en", "Images obtained at {INST} ({CITY})."),
    ("t-en-13", "en", "Billing acct {ACCOUNT}, social security number {SSN}."),
    ("t-en-14", "en", "The family can be reached at {PHONE}."),
    ("t-en-15", "en", "Results faxed to {FAX} per request."),
    ("t-en-16", "en", "Questions to {EMAIL}; protocol at {URL}."),
    ("t-en-17", "en", "ICD generator SN {DEVICE} in place."),
    ("t-en-18", "en", "Address on file: {STREET}, {CITY} {STATE} {ZIP}."),
    ("t-en-19", "en", "Outside films from {INST} dated {DATE}."),
    ("t-en-20", "en", "Elderly patient, age {AGE}, with fall."),
    ("t-en-21", "en", "{AGE} y/o woman seen at {TIME} in triage."),
    ("t-en-22", "en", "DEA/license no. {LICENSE} on file."),
    ("t-en-23", "en", "Per {CLINICIAN}, MD the line was repositioned."),
    ("t-en-24", "en", "Transcribed by {CLINICIAN} {DATE}."),
    ("t-en-25", "en", "Ms. {PATIENT} traveled from {CITY} last week."),
    ("t-en-26", "en", "Resides at {STREET} in {CITY}."),
    ("t-en-27", "en", "Study acquired on {DATE} at {TIME}."),
    ("t-en-28", "en", "Technologist: {CLINICIAN}"),
    ("t-en-29", "en", "{CLINICIAN} and {CLINICIAN} agree with the assessment."),
    ("t-en-30", "en", "SSN {SSN}. Health plan account {ACCOUNT}."),
    ("t-en-31", "en", "Order accession {ACC}; loop recorder serial {DEVICE}."),
    ("t-en-32", "en", "Spoke with {CLINICIAN} (pager {PHONE})."),
    ("t-en-33", "en", "Followed at {INST} cardiology clinic."),
    ("t-en-34", "en", "Read by {CLINICIAN}, cardiology fellow."),
    ("t-en-35", "en", "{PATIENT} was discharged on {DATE}."),
    ("t-en-36", "en", "I personally discussed these results with {PATIENT}'s daughter, {PATIENT}."),
    ("t-en-37", "en", "{PATIENT} born {DATE}, now {AGE}."),
    ("t-de-01", "de", "Beurteilt durch {CLINICIAN} am {DATE}, {TIME}."),
    ("t-de-02", "de", "Herr {PATIENT}, {AGE} J., stellt sich vor."),
    ("t-de-03", "de", "Telefonisch an {CLINICIAN} übermittelt."),
    ("t-de-04", "de", "Zuweisung aus {INST}, Telefon {PHONE}."),
    ("t-de-05", "de", "Patientennummer {MRN}; Auftragsnummer {ACC}"),
    ("t-de-06", "de", "Anschrift: {STREET}, {ZIP} {CITY}"),
    ("t-de-07", "de", "Im Vergleich zur Voruntersuchung vom {DATE} unverändert."),
    ("t-de-08", "de", "Frau {PATIENT}, geb. {DATE}, {AGE} Jahre alt."),
    ("t-de-09", "de", "ICD-Aggregat SN {DEVICE} abgefragt."),
    ("t-de-10", "de", "Gez. {CLINICIAN}"),
    ("t-de-11", "de", "Vorstellung in {INST} am {YLDATE}, {TIME}."),
    ("t-de-12", "de", "Telefax {FAX}; Rückfragen an {EMAIL}"),
)

#: carriers of the protected clinical controls, split like the templates
CONTROL_DEV: tuple[tuple[str, str], ...] = (
    ("en", "History of {CONTROL}."),
    ("en", "Findings consistent with {CONTROL}."),
    ("en", "{CONTROL} noted."),
    ("de", "Bekannt: {CONTROL}."),
)
CONTROL_TEST: tuple[tuple[str, str], ...] = (
    ("en", "Known {CONTROL}, stable."),
    ("en", "Again seen: {CONTROL}."),
    ("en", "Assessment: {CONTROL}"),
    ("de", "Z.n. {CONTROL}."),
)

#: protected clinical terms: eponyms, ECG leads, vertebral levels, labs, drugs, devices, scores
CONTROLS: tuple[tuple[str, str], ...] = tuple(
    ("eponym", t)
    for t in (
        "Wilson disease", "Wilson's disease", "Smith fracture", "Wolff-Parkinson-White syndrome",
        "Wolff-Parkinson-White pattern", "Austin Flint murmur", "Adams-Stokes attack", "Adams-Stokes syndrome",
        "Jackson-Pratt drain", "Parkinson disease", "Alzheimer dementia", "Hodgkin lymphoma",
        "non-Hodgkin lymphoma", "Crohn disease", "Graves disease", "Addison disease", "Cushing syndrome",
        "Barrett esophagus", "Brugada pattern", "Mobitz type II block", "Wenckebach periodicity",
        "Kerley B lines", "Swan-Ganz catheter", "Foley catheter", "Colles fracture", "Monteggia fracture",
        "Baker cyst", "Hill-Sachs lesion", "Bankart lesion", "Osgood-Schlatter disease", "Ewing sarcoma",
        "Wilms tumor", "Kaposi sarcoma", "Marfan syndrome", "Ehlers-Danlos syndrome", "Horner syndrome",
        "Pancoast tumor", "Hampton hump", "Westermark sign", "Morgagni hernia", "Bochdalek hernia",
        "Valsalva maneuver", "Tietze syndrome", "Takotsubo cardiomyopathy", "Lown-Ganong-Levine syndrome",
        "Sokolow-Lyon index", "Cornell voltage criteria", "Bazett correction", "Osborn waves",
        "Cheyne-Stokes respiration", "Kussmaul breathing", "Murphy sign", "Virchow node",
        "Glasgow Coma Scale 14", "Gleason score 7", "Hounsfield units", "Holter monitor", "Doppler ultrasound",
        "Trendelenburg position", "Greenfield filter", "Hickman catheter", "Chiari malformation",
        "Dandy-Walker variant", "Ebstein anomaly", "Eisenmenger syndrome", "Fallot tetralogy",
        "Kawasaki disease", "Lyme disease", "Paget disease", "Raynaud phenomenon", "Sjogren syndrome",
        "Tourette syndrome", "Whipple procedure", "Nissen fundoplication", "Roux-en-Y anastomosis",
        "Morison pouch", "pouch of Douglas", "Schatzki ring", "Zenker diverticulum", "Meckel diverticulum",
        "Hirschsprung disease", "Bell palsy", "Guillain-Barre syndrome", "Stevens-Johnson syndrome",
        "Dressler syndrome", "Prinzmetal angina", "Libman-Sacks endocarditis", "Osler nodes", "Janeway lesions",
        "Roth spots", "Duke criteria", "Framingham score", "Killip class II", "Morbus Bechterew",
        "Morbus Crohn", "Morbus Parkinson", "Morbus Basedow", "Hashimoto-Thyreoiditis", "Brugada-Syndrom",
        "WPW-Syndrom", "Lown-Klassifikation", "Mobitz-Block", "Cabrera-Kreis",
    )
) + tuple(
    ("ecg_lead", t)
    for t in (
        "ST elevation in V1-V3", "Q waves in II, III, aVF", "T inversion in aVL", "R wave in V5",
        "ST depression in V4-V6", "right-sided lead V4R", "lead I", "leads II and III", "aVR", "Q in aVF",
        "ST-Hebung in V2", "T-Negativierung in II, III, aVF", "Ableitung V6", "S in V1 plus R in V5",
        "tall R in V1", "ST elevation in I and aVL",
    )
) + tuple(
    ("vertebra", t)
    for t in (
        "T12 compression fracture", "L1 vertebral body", "L4-L5 disc space", "L5-S1 level", "C5-C6 osteophytes",
        "C2 dens", "T4 through T8", "S1 joint", "C7 spinous process", "L3 endplate", "T11-T12", "C3-4 level",
        "BWK 12 Fraktur", "LWK 1", "HWK 5/6",
    )
) + tuple(
    ("lab", t)
    for t in (
        "WBC 12500", "platelets 245000", "platelet count 150000", "glucose 105 mg/dL", "CK 12450 U/L",
        "NT-proBNP 15200 pg/mL", "BNP 1250", "troponin 0.45", "hemoglobin 9.8", "creatinine 1.4",
        "Leukozyten 12500/µl", "Thrombozyten 250000", "INR 2.5", "LDH 24500", "D-dimer 11500 ng/mL",
        "HbA1c 7.2%", "TSH 0.01", "SpO2 92%", "QTc 480 ms", "PR interval 220 ms", "QRS 140 ms",
        "heart rate 112 bpm", "BP 120/80", "2:1 AV block", "1:1 conduction", "ejection fraction 35%",
        "CD4 count 200", "pH 7.32", "pO2 65 mmHg", "Kalium 5.8 mmol/l",
    )
) + tuple(
    ("drug", t)
    for t in (
        "metoprolol 50 mg", "Metoprolol", "digoxin", "Digoxin toxicity", "amiodarone", "Amiodarone therapy",
        "warfarin", "Marcumar", "heparin 5000 units", "Lasix", "furosemide 40 mg", "Xarelto", "Eliquis",
        "Coumadin", "aspirin", "Plavix", "clopidogrel", "atorvastatin", "Lipitor", "Flecainide",
        "sotalol", "Bisoprolol", "Ramipril", "ASS 100", "Torasemid", "Nitroglycerin", "adenosine",
        "Digitalis effect", "Tikosyn", "Multaq",
    )
) + tuple(
    ("device", t)
    for t in (
        "PICC line", "Port-a-Cath", "dual-chamber pacemaker", "Medtronic pacemaker", "St. Jude ICD",
        "Boston Scientific ICD", "Impella device", "LVAD", "IABP", "ECMO cannula", "NG tube",
        "endotracheal tube", "sternal wires", "CABG clips", "Mitraclip", "TAVI prosthesis", "Watchman device",
        "loop recorder", "chest tube", "Herzschrittmacher", "Sonde im rechten Ventrikel", "CRT-D",
        "Zweikammer-Schrittmacher",
    )
) + tuple(
    ("anatomy", t)
    for t in (
        "Hilus", "left hilum", "right heart border", "azygos lobe", "aortic knob", "costophrenic angle",
        "Sternum", "Aorta ascendens", "Truncus pulmonalis", "circumflex artery", "LAD stenosis", "RCA occlusion",
        "Bundle of His", "Purkinje fibers", "Sylvian fissure", "Circle of Willis", "Eustachian valve",
        "Thebesian valve", "Achilles tendon", "Hunter canal",
    )
)  # fmt: skip
