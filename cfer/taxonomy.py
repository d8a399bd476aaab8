"""The 22 CFEE expression categories, their action units, RAF-DB labels and affect.

This module is the single source of truth for *what the classes are*: names, ids,
which basic emotions a compound is built from, which facial action units (AUs)
produce it, where it sits on the valence/arousal circumplex, and how RAF-DB's
integer labels map onto the same names.

Categories and ids
    Du, Tao & Martinez (2014), "Compound facial expressions of emotion", PNAS
    111(15):E1454-E1462 (CFEE). Neutral, 6 basic and 15 compound categories.
    ``Category.id`` is the position in the paper's Fig. 1 / Table 1 (neutral = 1,
    then happy ... disgusted = 2..7, then happily surprised ... awed = 8..22).

    Caveat on ids: the reference implementation of Maiden & Nakisa (2023),
    github.com/AngusMaiden/complex-FER (``src/complex_FER.py``,
    ``src/data/process.py``), does not hard-code ids; it reads the
    ``(id, name)`` pairs from the ``summary`` sheet of the dataset's
    ``AU_annotation_all_subjects.xls`` and matches them against file-name
    characters ``[0:2]``. That sheet is not public, so the ids here could not be
    checked against it, and third-party CFEE code suggests that the distributed
    file-name prefixes run beyond 22 in a different order. A CFEE loader should
    therefore map file prefixes to names through that sheet and only then to
    :class:`Category`, rather than assume ``prefix == Category.id``.

Components
    Each compound's two basic components, taken from its name (Du et al. 2014).
    ``appalled`` and ``hatred`` are the paper's two variants of disgust + anger,
    and ``awed`` is fear + surprise. A basic category's ``components`` is ``()``:
    "components" means "the basic categories this compound is built from", and a
    basic category is not built from anything.

Action units
    ``aus`` is the prototypical set given in the cfer issue, which is the table
    public code commonly reproduces. ``optional_aus`` holds the AUs that Table 1
    of Du et al. (2014) lists in brackets as inter-subject variants, each with the
    proportion of the 230 subjects that used it. The paper's Table 1 text was read
    from a transcription in a public repository, LieAnn/ACT409,
    ``OpenFace/lib/local/Utilities/src/RecorderCSV.cpp`` (commit 27064edc), which
    agrees with the prototypical sets that public code commonly reproduces; the
    PNAS PDF itself was not opened in this session. The paper's prototypical AUs are those used by more than 70%
    of subjects.

    Where the paper and the issue table differ (see :data:`TABLE1_PROTOTYPICAL_AUS`):

    * ``sadly_fearful``: paper 1, 4, 20, 25 with 15 (30%) optional; issue 1, 4, 15, 25.
      AU 15 is kept as prototypical. AU 20 is not listed as optional because the
      paper gives it no frequency, only "> 70%".
    * ``sadly_angry``: paper 4, 15 with 7 (48%) optional; issue 4, 7, 15.
    * ``appalled``: paper 4, 10 with 9 (56%) optional; issue 4, 9, 10.
    * ``hatred``: paper 4, 10 with 7 (57%) optional; issue 4, 7, 10.

    When the issue promotes a variant AU to prototypical, that AU is taken out of
    ``optional_aus``, so the two sets stay disjoint.

RAF-DB
    Li, Deng & Du (2017), RAF-DB: basic labels 1 Surprise, 2 Fear, 3 Disgust,
    4 Happiness, 5 Sadness, 6 Anger, 7 Neutral; compound labels 1 Happily
    Surprised ... 11 Disgustedly Surprised (RAF-DB has no fearfully disgusted,
    appalled, hatred or awed). Both orders are as in the cfer issue. They were
    cross-checked against public code found by code search (the hosting
    repositories were not resolved): a RAF-DB README listing "1: Surprise ...
    7: Neutral", and a RAF-DB loader whose compound ``classes`` list has the same
    11 names in the same order. Do not
    confuse these with RAF-CE (whdeng.cn/RAF/model4.html), which has 14 zero-based
    classes and includes fearfully disgusted at index 8.

Valence and arousal
    Basic categories: NRC VAD Lexicon v1 (Mohammad 2018, "Obtaining Reliable Human
    Ratings of Valence, Arousal, and Dominance for 20,000 English Words", ACL)
    scores of the category's own word (``happy``, ``sad``, ...), rescaled from
    [0, 1] to [-1, 1] with ``2 * score - 1``. The lexicon file was NOT available
    in this session: the six word scores in :data:`_NRC_VAD_V1_WORD_SCORES` are
    recalled and must be checked against ``NRC-VAD-Lexicon.txt`` before they are
    reported as results. Neutral sits at the origin of the circumplex (Russell
    1980) by convention, not from the lexicon. A compound is placed at the mean of
    its two components. As a result, ``appalled``, ``hatred`` and
    ``angrily_disgusted`` share one point, and so do ``awed`` and
    ``fearfully_surprised``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

NEUTRAL: str = "neutral"

KINDS: tuple[str, ...] = ("neutral", "basic", "compound")

RAFDB_SUBSETS: tuple[str, ...] = ("basic", "compound")


@dataclass(frozen=True)
class Category:
    """One CFEE expression category (Du, Tao & Martinez 2014).

    Attributes:
        id: Position in Fig. 1 / Table 1 of Du et al. (2014), 1..22. See the
            module docstring before you match it to CFEE file names.
        name: Canonical snake_case name, e.g. ``"happily_surprised"``.
        kind: ``"neutral"``, ``"basic"`` or ``"compound"``.
        components: Names of the two basic categories a compound is built from;
            ``()`` for neutral and basic categories.
        aus: Prototypical action units, sorted.
        optional_aus: ``(AU, frequency)`` pairs for the inter-subject variants of
            Table 1, sorted by AU. The frequency is the share of subjects using
            the AU, in (0, 1).
        valence: Position on the pleasure axis, in [-1, 1].
        arousal: Position on the activation axis, in [-1, 1].

    Raises:
        ValueError: If the fields break an invariant that downstream code relies
            on, such as unsorted AUs or an AU that is both prototypical and
            optional.
    """

    id: int
    name: str
    kind: str
    components: tuple[str, ...]
    aus: tuple[int, ...]
    optional_aus: tuple[tuple[int, float], ...]
    valence: float
    arousal: float

    def __post_init__(self) -> None:
        # The tables below are typed by hand, so check them where they are built.
        # A typo then fails at import time, not as a wrong training target later.
        if self.kind not in KINDS:
            raise ValueError(f"{self.name}: kind {self.kind!r} is not one of {KINDS}")
        expected_component_count = 2 if self.kind == "compound" else 0
        if len(self.components) != expected_component_count:
            raise ValueError(
                f"{self.name}: a {self.kind} category has {expected_component_count} "
                f"components, got {self.components}"
            )
        if list(self.aus) != sorted(set(self.aus)):
            raise ValueError(f"{self.name}: aus must be sorted and unique, got {self.aus}")
        optional_au_numbers = [au for au, _ in self.optional_aus]
        if optional_au_numbers != sorted(set(optional_au_numbers)):
            raise ValueError(
                f"{self.name}: optional_aus must be sorted by AU and unique, got {self.optional_aus}"
            )
        if set(optional_au_numbers) & set(self.aus):
            raise ValueError(f"{self.name}: an AU cannot be both prototypical and optional")
        for au, frequency in self.optional_aus:
            if not 0.0 < frequency < 1.0:
                raise ValueError(f"{self.name}: AU {au} frequency {frequency} is not in (0, 1)")
        for axis_name, value in (("valence", self.valence), ("arousal", self.arousal)):
            if not -1.0 <= value <= 1.0:
                raise ValueError(f"{self.name}: {axis_name} {value} is not in [-1, 1]")

    @property
    def display_name(self) -> str:
        """The name as words, e.g. ``"happily surprised"``."""
        return self.name.replace("_", " ")


# NRC VAD Lexicon v1 (Mohammad 2018) scores in [0, 1] as (valence, arousal).
# RECALLED, NOT VERIFIED: the lexicon file could not be opened in this session.
# Check each line against NRC-VAD-Lexicon.txt before reporting any result that
# uses these values as regression targets.
_NRC_VAD_V1_WORD_SCORES: dict[str, tuple[float, float]] = {
    "happy": (1.000, 0.735),
    "sad": (0.225, 0.333),
    "fearful": (0.146, 0.740),
    "angry": (0.122, 0.830),
    "surprised": (0.784, 0.855),
    "disgusted": (0.051, 0.773),
}


def _rescale_unit_to_signed(score: float) -> float:
    """Map a [0, 1] lexicon score onto the [-1, 1] circumplex axis."""
    return round(2.0 * score - 1.0, 4)


_BASIC_AFFECT: dict[str, tuple[float, float]] = {
    word: (_rescale_unit_to_signed(valence), _rescale_unit_to_signed(arousal))
    for word, (valence, arousal) in _NRC_VAD_V1_WORD_SCORES.items()
}


def _compound_affect(components: tuple[str, ...]) -> tuple[float, float]:
    """Place a compound at the mean of its basic components' (valence, arousal)."""
    valence = sum(_BASIC_AFFECT[name][0] for name in components) / len(components)
    arousal = sum(_BASIC_AFFECT[name][1] for name in components) / len(components)
    return round(valence, 4), round(arousal, 4)


# One row per category, in Du et al.'s Fig. 1 / Table 1 order; the row index + 1
# is the id. Columns: name, kind, components, prototypical AUs (issue table),
# optional AUs with Table 1 frequencies.
_CATEGORY_ROWS: tuple[
    tuple[str, str, tuple[str, ...], tuple[int, ...], tuple[tuple[int, float], ...]], ...
] = (
    ("neutral", "neutral", (), (), ()),
    ("happy", "basic", (), (12, 25), ((6, 0.51),)),
    ("sad", "basic", (), (4, 15), ((1, 0.60), (6, 0.50), (11, 0.26), (17, 0.67))),
    ("fearful", "basic", (), (1, 4, 20, 25), ((2, 0.57), (5, 0.63), (26, 0.33))),
    ("angry", "basic", (), (4, 7, 24), ((10, 0.26), (17, 0.52), (23, 0.29))),
    ("surprised", "basic", (), (1, 2, 25, 26), ((5, 0.66),)),
    ("disgusted", "basic", (), (9, 10, 17), ((4, 0.31), (24, 0.26))),
    (
        "happily_surprised",
        "compound",
        ("happy", "surprised"),
        (1, 2, 12, 25),
        ((5, 0.64), (26, 0.67)),
    ),
    (
        "happily_disgusted",
        "compound",
        ("happy", "disgusted"),
        (10, 12, 25),
        ((4, 0.32), (6, 0.61), (9, 0.59)),
    ),
    # Paper: 1, 4, 20, 25 [2 (46%), 5 (24%), 6 (34%), 15 (30%)]; the issue swaps 20 for 15.
    (
        "sadly_fearful",
        "compound",
        ("sad", "fearful"),
        (1, 4, 15, 25),
        ((2, 0.46), (5, 0.24), (6, 0.34)),
    ),
    # Paper: 4, 15 [6 (26%), 7 (48%), 11 (20%), 17 (50%)]; the issue promotes 7.
    (
        "sadly_angry",
        "compound",
        ("sad", "angry"),
        (4, 7, 15),
        ((6, 0.26), (11, 0.20), (17, 0.50)),
    ),
    (
        "sadly_surprised",
        "compound",
        ("sad", "surprised"),
        (1, 4, 25, 26),
        ((2, 0.27), (6, 0.31)),
    ),
    (
        "sadly_disgusted",
        "compound",
        ("sad", "disgusted"),
        (4, 10),
        ((1, 0.49), (6, 0.61), (9, 0.20), (11, 0.35), (15, 0.54), (17, 0.47), (25, 0.43)),
    ),
    (
        "fearfully_angry",
        "compound",
        ("fearful", "angry"),
        (4, 20, 25),
        ((5, 0.40), (7, 0.39), (10, 0.30), (11, 0.33)),
    ),
    (
        "fearfully_surprised",
        "compound",
        ("fearful", "surprised"),
        (1, 2, 5, 20, 25),
        ((4, 0.47), (10, 0.35), (11, 0.22), (26, 0.51)),
    ),
    (
        "fearfully_disgusted",
        "compound",
        ("fearful", "disgusted"),
        (1, 4, 10, 20, 25),
        ((2, 0.64), (5, 0.50), (6, 0.26), (9, 0.28), (15, 0.33)),
    ),
    (
        "angrily_surprised",
        "compound",
        ("angry", "surprised"),
        (4, 25, 26),
        ((5, 0.35), (7, 0.50), (10, 0.34)),
    ),
    (
        "angrily_disgusted",
        "compound",
        ("angry", "disgusted"),
        (4, 10, 17),
        ((7, 0.60), (9, 0.57), (24, 0.36)),
    ),
    (
        "disgustedly_surprised",
        "compound",
        ("disgusted", "surprised"),
        (1, 2, 5, 10),
        ((4, 0.45), (9, 0.37), (17, 0.66), (24, 0.33)),
    ),
    # Paper: 4, 10 [6 (25%), 9 (56%), 17 (67%), 24 (36%)]; the issue promotes 9.
    (
        "appalled",
        "compound",
        ("angry", "disgusted"),
        (4, 9, 10),
        ((6, 0.25), (17, 0.67), (24, 0.36)),
    ),
    # Paper: 4, 10 [7 (57%), 9 (27%), 17 (63%), 24 (37%)]; the issue promotes 7.
    (
        "hatred",
        "compound",
        ("angry", "disgusted"),
        (4, 7, 10),
        ((9, 0.27), (17, 0.63), (24, 0.37)),
    ),
    (
        "awed",
        "compound",
        ("fearful", "surprised"),
        (1, 2, 5, 25),
        ((4, 0.21), (20, 0.62), (26, 0.56)),
    ),
)


def _affect_for(name: str, kind: str, components: tuple[str, ...]) -> tuple[float, float]:
    if kind == "neutral":
        return 0.0, 0.0
    if kind == "basic":
        return _BASIC_AFFECT[name]
    return _compound_affect(components)


def _build_category(category_id: int, name: str, kind: str, components: tuple[str, ...],
                    aus: tuple[int, ...], optional_aus: tuple[tuple[int, float], ...]) -> Category:
    valence, arousal = _affect_for(name, kind, components)
    return Category(
        id=category_id,
        name=name,
        kind=kind,
        components=components,
        aus=aus,
        optional_aus=optional_aus,
        valence=valence,
        arousal=arousal,
    )


CATEGORIES: tuple[Category, ...] = tuple(
    _build_category(row_index + 1, *row) for row_index, row in enumerate(_CATEGORY_ROWS)
)

CATEGORY_NAMES: tuple[str, ...] = tuple(category.name for category in CATEGORIES)

BASIC: tuple[str, ...] = tuple(c.name for c in CATEGORIES if c.kind == "basic")

COMPOUND: tuple[str, ...] = tuple(c.name for c in CATEGORIES if c.kind == "compound")

# Prototypical AUs exactly as Table 1 of Du et al. (2014) prints them (> 70% of
# subjects). Kept beside the issue table so that the four disagreements listed
# in the module docstring stay visible and testable.
TABLE1_PROTOTYPICAL_AUS: dict[str, tuple[int, ...]] = {
    category.name: category.aus for category in CATEGORIES if category.kind != "neutral"
}
TABLE1_PROTOTYPICAL_AUS.update(
    {
        "sadly_fearful": (1, 4, 20, 25),
        "sadly_angry": (4, 15),
        "appalled": (4, 10),
        "hatred": (4, 10),
    }
)

ALL_AUS: tuple[int, ...] = tuple(
    sorted(
        {au for category in CATEGORIES for au in category.aus}
        | {au for category in CATEGORIES for au, _ in category.optional_aus}
    )
)

# FACS names (Ekman, Friesen & Hager 2002) for every AU used above.
AU_NAMES: dict[int, str] = {
    1: "inner brow raiser",
    2: "outer brow raiser",
    4: "brow lowerer",
    5: "upper lid raiser",
    6: "cheek raiser",
    7: "lid tightener",
    9: "nose wrinkler",
    10: "upper lip raiser",
    11: "nasolabial deepener",
    12: "lip corner puller",
    15: "lip corner depressor",
    17: "chin raiser",
    20: "lip stretcher",
    23: "lip tightener",
    24: "lip pressor",
    25: "lips part",
    26: "jaw drop",
}

RAFDB_BASIC: dict[int, str] = {
    1: "surprised",
    2: "fearful",
    3: "disgusted",
    4: "happy",
    5: "sad",
    6: "angry",
    7: "neutral",
}

RAFDB_COMPOUND: dict[int, str] = {
    1: "happily_surprised",
    2: "happily_disgusted",
    3: "sadly_fearful",
    4: "sadly_angry",
    5: "sadly_surprised",
    6: "sadly_disgusted",
    7: "fearfully_angry",
    8: "fearfully_surprised",
    9: "angrily_surprised",
    10: "angrily_disgusted",
    11: "disgustedly_surprised",
}

RAFCE_CLASSES: dict[int, str | None] = {
    0: "happily_surprised",
    1: "happily_disgusted",
    2: "sadly_fearful",
    3: "sadly_angry",
    4: "sadly_surprised",
    5: "sadly_disgusted",
    6: "fearfully_angry",
    7: "fearfully_surprised",
    8: "fearfully_disgusted",
    9: "angrily_surprised",
    10: "angrily_disgusted",
    11: "disgustedly_surprised",
    12: None,  # happily fearful: not one of the 22 CFEE categories
    13: None,  # happily sad: not one of the 22 CFEE categories
}
"""RAF-CE's 0-based labels (``RAFCE_emolabel.txt``; whdeng.cn/RAF/model4.html); None: outside the taxonomy."""

RAFCE_OUTSIDE_TAXONOMY: dict[int, str] = {12: "happily fearful", 13: "happily sad"}

ALIASES: dict[str, str] = {
    "happiness": "happy", "joy": "happy", "happy": "happy",
    "sadness": "sad", "sad": "sad",
    "fear": "fearful", "afraid": "fearful", "scared": "fearful",
    "anger": "angry", "angry": "angry", "mad": "angry",
    "surprise": "surprised", "surprised": "surprised",
    "disgust": "disgusted", "disgusted": "disgusted",
    "neutrality": "neutral", "calm": "neutral",
    "awe": "awed",
}
"""Other names of categories, as dataset folders spell them (FER2013's ``happy``, ``fear``, ...)."""

_CATEGORY_BY_ID: dict[int, Category] = {category.id: category for category in CATEGORIES}
_CATEGORY_BY_NAME: dict[str, Category] = {category.name: category for category in CATEGORIES}


def _canonical_name(text: str) -> str:
    """Turn ``"Happily Surprised"`` or ``"happily-surprised"`` into ``"happily_surprised"``."""
    return "_".join(text.strip().lower().replace("-", " ").replace("_", " ").split())


def get_category(key: int | str) -> Category:
    """Look a category up by CFEE id or by name.

    Args:
        key: An id in 1..22, a canonical name (``"happily_surprised"``) or a
            display name in any case (``"Happily Surprised"``).

    Returns:
        The matching :class:`Category`.

    Raises:
        KeyError: If no category has that id or name; the message lists the
            valid names.
        TypeError: If ``key`` is neither an int nor a str.
    """
    # bool is an int subclass; get_category(True) silently meaning neutral would hide a bug.
    if isinstance(key, bool) or not isinstance(key, (int, str)):
        raise TypeError(f"category key must be an int id or a str name, got {type(key).__name__}")
    if isinstance(key, int):
        if key in _CATEGORY_BY_ID:
            return _CATEGORY_BY_ID[key]
        raise KeyError(
            f"no category with id {key}; valid ids are 1..{len(CATEGORIES)}: "
            f"{', '.join(f'{c.id}={c.name}' for c in CATEGORIES)}"
        )
    canonical = _canonical_name(key)
    canonical = ALIASES.get(canonical, canonical)
    if canonical in _CATEGORY_BY_NAME:
        return _CATEGORY_BY_NAME[canonical]
    raise KeyError(f"unknown category {key!r}; valid names are: {', '.join(CATEGORY_NAMES)} "
                   f"(also accepted: {', '.join(sorted(set(ALIASES) - set(CATEGORY_NAMES)))})")


def category_names(kinds: Iterable[str] = ("basic",)) -> tuple[str, ...]:
    """Names of every category of the given kinds, in id order.

    Args:
        kinds: Any of ``"neutral"``, ``"basic"`` and ``"compound"``. A single
            string is taken as one kind.

    Returns:
        The matching names, in id order.

    Raises:
        ValueError: If a kind is not one of the valid kinds; the message names them.
    """
    # A bare string is an Iterable[str] of characters; read it as one kind instead.
    requested_kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    unknown_kinds = [kind for kind in requested_kinds if kind not in KINDS]
    if unknown_kinds:
        raise ValueError(f"unknown kind(s) {unknown_kinds}; valid kinds are {list(KINDS)}")
    return tuple(category.name for category in CATEGORIES if category.kind in requested_kinds)


def from_rafdb(label: int, subset: str) -> str:
    """Translate a RAF-DB label to a canonical category name.

    Args:
        label: The 1-based label from RAF-DB's ``list_patition_label.txt``.
        subset: ``"basic"`` (7 labels, single-label subset) or ``"compound"``
            (11 labels).

    Returns:
        The canonical name, e.g. ``from_rafdb(1, "basic") == "surprised"``.

    Raises:
        ValueError: If ``subset`` is not ``"basic"`` or ``"compound"``.
        KeyError: If ``label`` is not a label of that subset; the message lists
            the valid labels.
        TypeError: If ``label`` is not an int.
    """
    if subset not in RAFDB_SUBSETS:
        raise ValueError(f"unknown RAF-DB subset {subset!r}; valid subsets are {list(RAFDB_SUBSETS)}")
    if isinstance(label, bool) or not isinstance(label, int):
        raise TypeError(f"RAF-DB label must be an int, got {type(label).__name__}")
    labels = RAFDB_BASIC if subset == "basic" else RAFDB_COMPOUND
    if label not in labels:
        raise KeyError(
            f"RAF-DB {subset} label {label} does not exist; valid labels are "
            f"{', '.join(f'{number}={name}' for number, name in labels.items())}"
        )
    return labels[label]


__all__ = [
    "ALL_AUS",
    "AU_NAMES",
    "BASIC",
    "CATEGORIES",
    "ALIASES",
    "CATEGORY_NAMES",
    "RAFCE_CLASSES",
    "RAFCE_OUTSIDE_TAXONOMY",
    "COMPOUND",
    "KINDS",
    "NEUTRAL",
    "RAFDB_BASIC",
    "RAFDB_COMPOUND",
    "RAFDB_SUBSETS",
    "TABLE1_PROTOTYPICAL_AUS",
    "Category",
    "category_names",
    "from_rafdb",
    "get_category",
]
