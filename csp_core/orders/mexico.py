"""Mexico's 32 federal entities, as order systems name them.

Order systems send a state as its ISO 3166-2:MX code (CMX, JAL, NLE), as the usual postal
abbreviation (CDMX, Jal., N.L., Edo. Méx.) or by name (Jalisco, Nuevo León, Estado de México).
Matching ignores case, dots, spacing and accents ("Nuevo Leon" is Nuevo León): many order
systems drop accents, and refusing a real state for that would only push the sender to guess.
"""

from __future__ import annotations

import unicodedata

# ISO 3166-2:MX code -> (official short name, other forms order systems send).
MX_STATES: dict[str, tuple[str, tuple[str, ...]]] = {
    "AGU": ("Aguascalientes", ("Ags",)),
    "BCN": ("Baja California", ("BC",)),
    "BCS": ("Baja California Sur", ()),
    "CAM": ("Campeche", ("Camp",)),
    "CHP": ("Chiapas", ("Chis",)),
    "CHH": ("Chihuahua", ("Chih",)),
    # Distrito Federal until 2016; older address books still say so.
    "CMX": ("Ciudad de México", ("CDMX", "DF", "Distrito Federal")),
    "COA": ("Coahuila", ("Coah", "Coahuila de Zaragoza")),
    "COL": ("Colima", ()),
    "DUR": ("Durango", ("Dgo",)),
    "GUA": ("Guanajuato", ("Gto",)),
    "GRO": ("Guerrero", ()),
    "HID": ("Hidalgo", ("Hgo",)),
    "JAL": ("Jalisco", ()),
    "MEX": ("Estado de México", ("México", "Edo. de México", "Edo. Méx.", "Edomex")),
    "MIC": ("Michoacán", ("Mich", "Michoacán de Ocampo")),
    "MOR": ("Morelos", ()),
    "NAY": ("Nayarit", ()),
    "NLE": ("Nuevo León", ("NL",)),
    "OAX": ("Oaxaca", ()),
    "PUE": ("Puebla", ()),
    "QUE": ("Querétaro", ("Qro", "Querétaro de Arteaga")),
    "ROO": ("Quintana Roo", ("Q. Roo", "QRoo")),
    "SLP": ("San Luis Potosí", ()),
    "SIN": ("Sinaloa", ()),
    "SON": ("Sonora", ()),
    "TAB": ("Tabasco", ()),
    "TAM": ("Tamaulipas", ("Tamps",)),
    "TLA": ("Tlaxcala", ("Tlax",)),
    "VER": ("Veracruz", ("Veracruz de Ignacio de la Llave",)),
    "YUC": ("Yucatán", ()),
    "ZAC": ("Zacatecas", ()),
}


def _key(text: str) -> str:
    """Case, accents, dots and spacing do not tell states apart."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    letters = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(letters.replace(".", " ").split()).replace(" ", "")


_BY_KEY: dict[str, str] = {}
for _code, (_name, _aliases) in MX_STATES.items():
    for _form in (_code, _name, *_aliases):
        assert _BY_KEY.setdefault(_key(_form), _code) == _code, f"{_form} names two states"


def mx_state_code(text: str) -> str | None:
    """The ISO 3166-2:MX code of a state as order systems write it, or None."""
    return _BY_KEY.get(_key(text))


ACCEPTED_STATE_FORMS = (
    "one of Mexico's 32 states, by name (e.g. Jalisco, Nuevo León, Ciudad de México; "
    "accents optional), usual abbreviation (e.g. CDMX, Jal., N.L., Edo. Méx.) or "
    "ISO 3166-2:MX code (" + ", ".join(MX_STATES) + ")"
)
