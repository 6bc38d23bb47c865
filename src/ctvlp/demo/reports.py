"""German and English radiology reports for demo studies, citing images the way radiologists do.

Every planted image reference is recorded as a ``Citation`` with its expected fate (resolvable,
image out of range, unknown series, ambiguous without a series) so the miner can be scored.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from ctvlp.demo.phantom import Lesion

EN_POSITIVE = {
    "Lung nodule": "Solid pulmonary nodule in the {region} measuring {size} mm",
    "Consolidation": "Consolidation in the {region}",
    "Atelectasis": "Plate-like atelectasis in the {region}",
    "Pleural effusion": "{Side}-sided pleural effusion",
    "Emphysema": "Centrilobular emphysema, predominantly in both upper lobes",
    "Cardiomegaly": "The heart is enlarged (cardiomegaly)",
    "Pericardial effusion": "Small pericardial effusion",
    "Arterial wall calcification": "Calcified plaques of the descending aortic wall",
    "Coronary artery wall calcification": "Calcification of the left anterior descending coronary artery",
    "Medical material": "Port catheter system in the right anterior chest wall",
    "Lymphadenopathy": "Enlarged lymph node in the right paratracheal region, short axis {size} mm",
    "Hiatal hernia": "Small hiatal hernia",
    "Lung opacity": "Ground-glass opacity in the {region}",
    "Pulmonary fibrotic sequela": "Fibrotic bands in the {region}",
}
DE_POSITIVE = {
    "Lung nodule": "Solider Rundherd {region} mit {size} mm",
    "Consolidation": "Konsolidierung {region}",
    "Atelectasis": "Plattenatelektase {region}",
    "Pleural effusion": "Pleuraerguss {side}",
    "Emphysema": "Zentrilobuläres Lungenemphysem, betont in beiden Oberlappen",
    "Cardiomegaly": "Vergrößertes Herz (Kardiomegalie)",
    "Pericardial effusion": "Schmaler Perikarderguss",
    "Arterial wall calcification": "Verkalkte Plaques der Aorta descendens",
    "Coronary artery wall calcification": "Koronarverkalkung des Ramus interventricularis anterior",
    "Medical material": "Portkatheter-System in der rechten vorderen Thoraxwand",
    "Lymphadenopathy": "Vergrößerter Lymphknoten rechts paratracheal, Kurzachse {size} mm",
    "Hiatal hernia": "Kleine Hiatushernie",
    "Lung opacity": "Milchglasverschattung {region}",
    "Pulmonary fibrotic sequela": "Fibrotische Narbenzüge {region}",
}
EN_NEGATIVE = {
    "Lung nodule": "No pulmonary nodules.",
    "Consolidation": "No consolidation.",
    "Atelectasis": "No atelectasis.",
    "Pleural effusion": "No pleural effusion.",
    "Emphysema": "No emphysema.",
    "Cardiomegaly": "Heart size is normal, no cardiomegaly.",
    "Pericardial effusion": "No pericardial effusion.",
    "Arterial wall calcification": "No calcification of the aortic wall.",
    "Coronary artery wall calcification": "No coronary artery calcification.",
    "Medical material": "No medical material or foreign body.",
    "Lymphadenopathy": "No lymphadenopathy.",
    "Hiatal hernia": "No hiatal hernia.",
    "Lung opacity": "No ground-glass opacity.",
    "Pulmonary fibrotic sequela": "No fibrotic changes.",
}
DE_NEGATIVE = {
    "Lung nodule": "Keine pulmonalen Rundherde.",
    "Consolidation": "Keine Konsolidierung.",
    "Atelectasis": "Keine Atelektasen.",
    "Pleural effusion": "Kein Pleuraerguss.",
    "Emphysema": "Kein Lungenemphysem.",
    "Cardiomegaly": "Normal großes Herz, keine Kardiomegalie.",
    "Pericardial effusion": "Kein Perikarderguss.",
    "Arterial wall calcification": "Keine Verkalkungen der Aortenwand.",
    "Coronary artery wall calcification": "Keine Koronarverkalkungen.",
    "Medical material": "Kein Fremdmaterial.",
    "Lymphadenopathy": "Keine Lymphadenopathie.",
    "Hiatal hernia": "Keine Hiatushernie.",
    "Lung opacity": "Keine Milchglasverschattung.",
    "Pulmonary fibrotic sequela": "Keine fibrotischen Veränderungen.",
}
DE_LOBES = {
    "upper lobe": "Oberlappen", "middle lobe": "Mittellappen", "lower lobe": "Unterlappen",
}
# (style name, template); {s} series, {i} image, {a}-{b} a range whose middle is {i}
EN_STYLES = (
    ("series_image", " (series {s}, image {i})"),
    ("see_series_image", ", see series {s}, image {i}"),
    ("image_of_series", " (image {i} of series {s})"),
    ("se_im", " (Se {s}/Im {i})"),
    ("range", " (series {s}, images {a}-{b})"),
    ("image_only", " (image {i})"),
)
DE_STYLES = (
    ("serie_bild", " (Serie {s}, Bild {i})"),
    ("se_bi", " (Se {s}/Bi {i})"),
    ("se_bi_dots", " (Se. {s} / Bi. {i})"),
    ("bild_der_serie", " (Bild {i} der Serie {s})"),
    ("serie_bild_plain", ", Serie {s} Bild {i}"),
    ("range", " (Bilder {a} bis {b} der Serie {s})"),
    ("image_only", " (Bild {i})"),
)


@dataclass(frozen=True)
class SeriesGeometry:
    """What a report writer needs of a series: its number and the z of each instance number."""

    number: int
    z_by_instance: dict[int, float]

    def nearest_instance(self, z: float) -> int:
        return min(self.z_by_instance, key=lambda i: abs(self.z_by_instance[i] - z))


@dataclass(frozen=True)
class Citation:
    """One planted image reference with the answer a correct miner must give."""

    label: str
    style: str
    series: int | None
    image: int
    image_range: tuple[int, int] | None
    expected: str  # ok | image_out_of_range | unknown_series | ambiguous_series
    true_z: float | None  # z (LPS mm) of the cited image plane, when it exists
    lesion_z: float


def _region_de(lesion: Lesion) -> str:
    if lesion.region == "lingula":
        return "in der Lingula"
    side = "rechten" if lesion.side == "right" else "linken"
    for en, de in DE_LOBES.items():
        if en in lesion.region:
            return f"im {side} {de}"
    return lesion.region


def positive_sentence(lesion: Lesion, lang: str, rng: np.random.Generator) -> str:
    """The finding sentence without final punctuation (a reference may still be appended)."""
    size = int(round(2 * lesion.radius))
    if lang == "de":
        side = "rechts" if lesion.side == "right" else "links"
        return DE_POSITIVE[lesion.label].format(region=_region_de(lesion), size=size, side=side)
    return EN_POSITIVE[lesion.label].format(
        region=lesion.region, size=size, Side=lesion.side.capitalize())


def plan_citation(lesion: Lesion, series: list[SeriesGeometry], lang: str,
                  rng: np.random.Generator, broken_rate: float) -> tuple[str, Citation]:
    """Choose a style and a cited series for a focal lesion; sometimes plant a broken reference."""
    styles = DE_STYLES if lang == "de" else EN_STYLES
    style, template = styles[int(rng.integers(len(styles)))]
    geo = series[int(rng.integers(len(series)))]
    image = geo.nearest_instance(lesion.center[2])
    number, expected = geo.number, "ok"
    roll = rng.random()
    if style == "image_only":
        expected = "ambiguous_series" if len(series) > 1 else "ok"
    elif roll < broken_rate / 2:
        image, expected = max(geo.z_by_instance) + int(rng.integers(5, 40)), "image_out_of_range"
    elif roll < broken_rate:
        number, expected = max(g.number for g in series) + int(rng.integers(3, 9)), "unknown_series"
    lo, hi = (image - 2, image + 2) if style == "range" else (image, image)
    true_z = geo.z_by_instance.get(image) if expected in ("ok", "ambiguous_series") else None
    text = template.format(s=number, i=image, a=lo, b=hi)
    cited_series = None if style == "image_only" else number
    citation = Citation(lesion.label, style, cited_series, image, (lo, hi) if style == "range" else None,
                        expected, true_z, lesion.center[2])
    return text, citation


@dataclass(frozen=True)
class ReportHeader:
    """The PHI a real report header carries; all of it is planted canary text."""

    name: str
    birth_date: str  # YYYYMMDD
    patient_id: str
    accession: str
    physician: str
    institution: str
    study_date: str  # YYYYMMDD


def _dotted(date: str) -> str:
    return f"{date[6:8]}.{date[4:6]}.{date[0:4]}"


def header_lines(h: ReportHeader, lang: str) -> list[str]:
    if lang == "de":
        return [
            "Radiologischer Befund",
            f"Patient: {h.name}, geb. {_dotted(h.birth_date)}, PID: {h.patient_id}",
            f"Auftragsnummer: {h.accession} | Zuweiser: {h.physician} | {h.institution}",
            f"Untersuchung: CT Thorax vom {_dotted(h.study_date)}",
        ]
    return [
        "Radiology report",
        f"Patient: {h.name}, DOB: {_dotted(h.birth_date)}, MRN: {h.patient_id}",
        f"Accession: {h.accession} | Referring physician: {h.physician} | {h.institution}",
        f"Examination: CT chest on {_dotted(h.study_date)}",
    ]


def compose_report(header: ReportHeader, lang: str, lesions: tuple[Lesion, ...],
                   series: list[SeriesGeometry], rng: np.random.Generator,
                   cite: bool, broken_rate: float, absent: list[str]) -> tuple[str, list[Citation]]:
    """The full report text and the citations planted in it."""
    citations: list[Citation] = []
    findings: list[str] = []
    for lesion in lesions:
        sentence = positive_sentence(lesion, lang, rng)
        if cite and lesion.focal and rng.random() < 0.85:
            ref, citation = plan_citation(lesion, series, lang, rng, broken_rate)
            sentence += ref
            citations.append(citation)
        findings.append(sentence + ".")
    negatives = DE_NEGATIVE if lang == "de" else EN_NEGATIVE
    findings += [negatives[label] for label in absent]
    order = rng.permutation(len(findings))
    body = " ".join(findings[i] for i in order)
    if plants_identity(header):  # identifiers inside the body, not only in the header: the scrubber must find them
        body = identity_sentence(header, lang) + " " + body
    s_numbers = ", ".join(str(g.number) for g in series)
    if lang == "de":
        clin = "Husten seit 3 Wochen, Ausschluss Pneumonie. Kontrolle in 6 Monaten geplant."
        tech = f"Mehrzeilen-CT des Thorax nach i.v. KM-Gabe, axiale Rekonstruktionen (Serien {s_numbers})."
        impression = _impression(lesions, lang)
        sections = ["Klinische Angaben:", clin, "", "Technik:", tech, "", "Befund:", body, "",
                    "Beurteilung:", impression]
    else:
        clin = "Cough for 3 weeks, rule out pneumonia. Follow-up in 6 months planned."
        tech = f"Multidetector CT of the chest with i.v. contrast, axial reconstructions (series {s_numbers})."
        impression = _impression(lesions, lang)
        sections = ["Clinical information:", clin, "", "Technique:", tech, "", "Findings:", body, "",
                    "Impression:", impression]
    return "\n".join(header_lines(header, lang) + [""] + sections) + "\n", citations


def plants_identity(header: ReportHeader) -> bool:
    """About a third of the reports name the patient inside the findings (chosen by the accession number, so
    the random draws of the rest of the cohort are unchanged)."""
    return int(hashlib.sha256(header.accession.encode()).hexdigest(), 16) % 3 == 0


def identity_sentence(header: ReportHeader, lang: str) -> str:
    surname = header.name.split()[-1]
    if lang == "de":
        return (f"Patient {header.name}, geb. {_dotted(header.birth_date)}, kooperativ; "
                f"Befund mit {surname.upper()} besprochen.")
    return f"Patient {header.name} (DOB {_dotted(header.birth_date)}) was cooperative; findings discussed with {surname}."


def _impression(lesions: tuple[Lesion, ...], lang: str) -> str:
    if not lesions:
        return ("Kein Nachweis eines akuten kardiopulmonalen Befundes." if lang == "de"
                else "No acute cardiopulmonary abnormality.")
    names = [lesion.label.lower() for lesion in lesions]
    if lang == "de":
        return "Siehe Befund: " + ", ".join(DE_POSITIVE[l.label].split(" {")[0] for l in lesions) + "."
    return "Findings as described: " + ", ".join(names) + "."
