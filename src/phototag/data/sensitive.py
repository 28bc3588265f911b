"""Words phototag never suggests as a keyword: they could hurt the person in the photo.

A keyword describes what is in a photo; these words describe who a person is (ethnicity,
religion, nationality), their body or health, or are dated or derogatory names for
people. Some come from research vocabularies (Corel-5k has "indian", "african" and
"buddhist"); models keep them for evaluation, but no keyword output of phototag
(`phototag.models.base.decoded_tags`: annotate, serve, the Ray engine,
`Annotator.annotate`) contains one. Words with an everyday meaning that is not about
a person ("black", "white", "temple", "church", "buddha", "monks") are not listed.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Final

import numpy as np

if TYPE_CHECKING:
    from phototag.data.vocabulary import Vocabulary

#: The listed words, lower case; plurals in "s" are matched too (`is_sensitive`).
SENSITIVE_TERMS: Final = frozenset(
    {
        # ethnicity and skin colour of people, including dated and derogatory names
        "aboriginal", "aborigine", "african", "african american", "afro-american", "arab",
        "asian", "bushman", "caucasian", "colored", "coloured", "eskimo", "ethnic",
        "gypsy", "gypsies", "half-breed", "hispanic", "hottentot", "indian",
        "latina", "latino", "mestizo", "mulatto", "native", "native american", "negro",
        "negroes", "oriental", "pygmy", "pygmies", "redskin", "savage", "squaw",
        "tribesman", "tribesmen", "tribeswoman",
        # religion of people
        "atheist", "buddhist", "catholic", "christian", "hindu", "jew", "jewish",
        "muslim", "moslem", "mormon", "protestant", "sikh",
        # nationality of people
        "american", "british", "chinese", "english", "french", "german", "indonesian",
        "irish", "italian", "japanese", "korean", "mexican", "pakistani", "russian",
        "scottish", "spanish", "thai", "turkish", "vietnamese",
        # body
        "fat", "obese", "overweight", "skinny", "ugly", "nude", "naked", "topless",
        "bald",
        # health and disability
        "disabled", "handicapped", "cripple", "crippled", "retard", "retarded",
        "spastic", "mongoloid", "midget", "dwarf", "invalid", "sick", "insane",
        "lunatic", "psycho", "deformed", "anorexic", "autistic",
    }
)  # fmt: skip


def is_sensitive(label: str) -> bool:
    """Whether phototag must never suggest `label`: it, any level of its hierarchy
    (``People|Indian``, ``People/Indian``) or its singular in "s" is a listed word."""
    for part in label.replace("/", "|").split("|"):
        word = " ".join(part.casefold().split())
        if word in SENSITIVE_TERMS or (word.endswith("s") and word[:-1] in SENSITIVE_TERMS):
            return True
    return False


@lru_cache(maxsize=32)
def suggestible(vocabulary: Vocabulary) -> np.ndarray:
    """Per label of `vocabulary`, whether phototag may suggest it (not `is_sensitive`);
    read-only and computed once per vocabulary (every request of a service reuses it)."""
    allowed = np.array([not is_sensitive(name) for name in vocabulary], dtype=bool)
    allowed.flags.writeable = False
    return allowed
