"""Tests for cfer.taxonomy against the tables it is specified by."""

import dataclasses

import pytest

from cfer import taxonomy
from cfer.taxonomy import (
    ALL_AUS,
    AU_NAMES,
    BASIC,
    CATEGORIES,
    CATEGORY_NAMES,
    COMPOUND,
    NEUTRAL,
    RAFDB_BASIC,
    RAFDB_COMPOUND,
    TABLE1_PROTOTYPICAL_AUS,
    Category,
    category_names,
    from_rafdb,
    get_category,
)

# The specification: prototypical AUs from the cfer issue, written out here rather
# than read from the module so that a typo in the module makes this test fail.
ISSUE_PROTOTYPICAL_AUS = {
    "neutral": (),
    "happy": (12, 25),
    "sad": (4, 15),
    "fearful": (1, 4, 20, 25),
    "angry": (4, 7, 24),
    "surprised": (1, 2, 25, 26),
    "disgusted": (9, 10, 17),
    "happily_surprised": (1, 2, 12, 25),
    "happily_disgusted": (10, 12, 25),
    "sadly_fearful": (1, 4, 15, 25),
    "sadly_angry": (4, 7, 15),
    "sadly_surprised": (1, 4, 25, 26),
    "sadly_disgusted": (4, 10),
    "fearfully_angry": (4, 20, 25),
    "fearfully_surprised": (1, 2, 5, 20, 25),
    "fearfully_disgusted": (1, 4, 10, 20, 25),
    "angrily_surprised": (4, 25, 26),
    "angrily_disgusted": (4, 10, 17),
    "disgustedly_surprised": (1, 2, 5, 10),
    "appalled": (4, 9, 10),
    "hatred": (4, 7, 10),
    "awed": (1, 2, 5, 25),
}

# Du et al. (2014) Fig. 1 order, which fixes the ids.
EXPECTED_ORDER = (
    "neutral",
    "happy",
    "sad",
    "fearful",
    "angry",
    "surprised",
    "disgusted",
    "happily_surprised",
    "happily_disgusted",
    "sadly_fearful",
    "sadly_angry",
    "sadly_surprised",
    "sadly_disgusted",
    "fearfully_angry",
    "fearfully_surprised",
    "fearfully_disgusted",
    "angrily_surprised",
    "angrily_disgusted",
    "disgustedly_surprised",
    "appalled",
    "hatred",
    "awed",
)

EXPECTED_COMPONENTS = {
    "happily_surprised": {"happy", "surprised"},
    "happily_disgusted": {"happy", "disgusted"},
    "sadly_fearful": {"sad", "fearful"},
    "sadly_angry": {"sad", "angry"},
    "sadly_surprised": {"sad", "surprised"},
    "sadly_disgusted": {"sad", "disgusted"},
    "fearfully_angry": {"fearful", "angry"},
    "fearfully_surprised": {"fearful", "surprised"},
    "fearfully_disgusted": {"fearful", "disgusted"},
    "angrily_surprised": {"angry", "surprised"},
    "angrily_disgusted": {"angry", "disgusted"},
    "disgustedly_surprised": {"disgusted", "surprised"},
    "appalled": {"angry", "disgusted"},
    "hatred": {"angry", "disgusted"},
    "awed": {"fearful", "surprised"},
}


def test_there_are_22_categories_with_ids_1_to_22_in_fig1_order():
    assert len(CATEGORIES) == 22
    assert [c.id for c in CATEGORIES] == list(range(1, 23))
    assert CATEGORY_NAMES == EXPECTED_ORDER
    assert len(set(CATEGORY_NAMES)) == 22


def test_kinds_split_into_neutral_6_basic_15_compound():
    assert NEUTRAL == "neutral"
    assert get_category(1).kind == "neutral"
    assert BASIC == EXPECTED_ORDER[1:7]
    assert COMPOUND == EXPECTED_ORDER[7:]
    assert [c.kind for c in CATEGORIES].count("compound") == 15


def test_every_compound_is_built_from_two_basic_categories():
    for name in COMPOUND:
        category = get_category(name)
        assert len(category.components) == 2, name
        assert set(category.components) <= set(BASIC), name
        assert set(category.components) == EXPECTED_COMPONENTS[name], name


def test_neutral_and_basic_categories_have_no_components():
    for name in (NEUTRAL, *BASIC):
        assert get_category(name).components == ()


def test_prototypical_aus_match_the_issue_table_exactly():
    actual = {c.name: c.aus for c in CATEGORIES}
    assert actual == ISSUE_PROTOTYPICAL_AUS


def test_paper_differs_from_issue_table_only_where_documented():
    differing = {
        name for name, paper_aus in TABLE1_PROTOTYPICAL_AUS.items()
        if paper_aus != ISSUE_PROTOTYPICAL_AUS[name]
    }
    assert differing == {"sadly_fearful", "sadly_angry", "appalled", "hatred"}


def test_optional_aus_are_disjoint_sorted_and_have_frequencies_in_open_unit_interval():
    for category in CATEGORIES:
        optional_au_numbers = [au for au, _ in category.optional_aus]
        assert optional_au_numbers == sorted(set(optional_au_numbers)), category.name
        assert not set(optional_au_numbers) & set(category.aus), category.name
        for au, frequency in category.optional_aus:
            assert 0.0 < frequency < 1.0, (category.name, au)


def test_table1_frequencies_spot_checks():
    # Values printed in Table 1 of Du et al. (2014).
    assert dict(get_category("happy").optional_aus) == {6: 0.51}
    assert dict(get_category("sadly_disgusted").optional_aus)[25] == 0.43
    assert dict(get_category("awed").optional_aus) == {4: 0.21, 20: 0.62, 26: 0.56}


def test_neutral_has_no_aus():
    neutral = get_category(NEUTRAL)
    assert neutral.aus == () and neutral.optional_aus == ()


def test_aus_are_sorted():
    for category in CATEGORIES:
        assert list(category.aus) == sorted(category.aus), category.name


def test_all_aus_is_the_sorted_union_and_every_au_has_a_facs_name():
    used = {au for c in CATEGORIES for au in c.aus} | {au for c in CATEGORIES for au, _ in c.optional_aus}
    assert ALL_AUS == tuple(sorted(used))
    assert set(ALL_AUS) <= set(AU_NAMES)
    assert AU_NAMES[1] == "inner brow raiser"
    assert AU_NAMES[12] == "lip corner puller"


@pytest.mark.parametrize(
    "key",
    [10, "sadly_fearful", "sadly fearful", "Sadly Fearful", "  SADLY-FEARFUL "],
)
def test_get_category_by_id_name_or_display_name(key):
    assert get_category(key).name == "sadly_fearful"


def test_display_name_uses_spaces():
    assert get_category("happily_surprised").display_name == "happily surprised"


@pytest.mark.parametrize("key", ["contempt", 0, 23, -1])
def test_unknown_category_raises_key_error_listing_valid_names(key):
    with pytest.raises(KeyError) as raised:
        get_category(key)
    assert "happily_surprised" in str(raised.value)


@pytest.mark.parametrize("key", [True, 1.0, None])
def test_get_category_rejects_non_int_non_str_keys(key):
    with pytest.raises(TypeError):
        get_category(key)


def test_category_names_by_kind():
    assert category_names() == BASIC
    assert category_names(("compound",)) == COMPOUND
    assert category_names(["neutral", "basic"]) == EXPECTED_ORDER[:7]
    assert category_names("compound") == COMPOUND
    assert category_names(("neutral", "basic", "compound")) == CATEGORY_NAMES


def test_category_names_unknown_kind_raises_value_error_naming_valid_kinds():
    with pytest.raises(ValueError, match="compound"):
        category_names(("basics",))


def test_rafdb_basic_has_7_labels_including_neutral_in_rafdb_order():
    assert RAFDB_BASIC == {
        1: "surprised",
        2: "fearful",
        3: "disgusted",
        4: "happy",
        5: "sad",
        6: "angry",
        7: "neutral",
    }
    assert set(RAFDB_BASIC.values()) == {NEUTRAL, *BASIC}


def test_rafdb_compound_has_11_labels_that_are_cfee_compounds():
    assert list(RAFDB_COMPOUND) == list(range(1, 12))
    assert len(set(RAFDB_COMPOUND.values())) == 11
    assert set(RAFDB_COMPOUND.values()) <= set(COMPOUND)
    assert set(COMPOUND) - set(RAFDB_COMPOUND.values()) == {
        "fearfully_disgusted",
        "appalled",
        "hatred",
        "awed",
    }
    assert RAFDB_COMPOUND[1] == "happily_surprised"
    assert RAFDB_COMPOUND[11] == "disgustedly_surprised"


def test_from_rafdb_translates_and_fails_clearly():
    assert from_rafdb(1, "basic") == "surprised"
    assert from_rafdb(7, "basic") == NEUTRAL
    assert from_rafdb(9, "compound") == "angrily_surprised"
    with pytest.raises(ValueError, match="basic"):
        from_rafdb(1, "multi")
    with pytest.raises(KeyError, match="disgustedly_surprised"):
        from_rafdb(12, "compound")
    with pytest.raises(KeyError):
        from_rafdb(0, "basic")
    with pytest.raises(TypeError):
        from_rafdb("1", "basic")


def test_valence_and_arousal_are_in_range_and_sane():
    for category in CATEGORIES:
        assert -1.0 <= category.valence <= 1.0, category.name
        assert -1.0 <= category.arousal <= 1.0, category.name
    assert get_category("happy").valence > 0 > get_category("sad").valence
    assert get_category("surprised").arousal > get_category("sad").arousal
    assert get_category("angry").arousal > get_category("sad").arousal
    assert (get_category(NEUTRAL).valence, get_category(NEUTRAL).arousal) == (0.0, 0.0)


def test_compounds_sit_at_the_mean_of_their_components():
    for name in COMPOUND:
        category = get_category(name)
        first, second = (get_category(component) for component in category.components)
        assert category.valence == pytest.approx((first.valence + second.valence) / 2, abs=1e-3)
        assert category.arousal == pytest.approx((first.arousal + second.arousal) / 2, abs=1e-3)


def test_category_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_category("happy").name = "joy"  # type: ignore[misc]


def _valid_fields(**overrides):
    fields = dict(
        id=99, name="test", kind="basic", components=(), aus=(1, 2),
        optional_aus=((4, 0.5),), valence=0.0, arousal=0.0,
    )
    fields.update(overrides)
    return fields


@pytest.mark.parametrize(
    "overrides",
    [
        {"kind": "mixed"},
        {"aus": (2, 1)},
        {"optional_aus": ((2, 0.5),)},  # also prototypical
        {"optional_aus": ((4, 1.0),)},
        {"optional_aus": ((4, 0.0),)},
        {"optional_aus": ((5, 0.5), (4, 0.5))},
        {"kind": "compound", "components": ("happy",)},
        {"components": ("happy",)},
        {"valence": 1.5},
    ],
)
def test_category_rejects_broken_invariants(overrides):
    with pytest.raises(ValueError):
        Category(**_valid_fields(**overrides))


def test_valid_category_fields_are_accepted():
    assert Category(**_valid_fields()).display_name == "test"


def test_public_names_are_exported():
    for name in (
        "Category", "CATEGORIES", "CATEGORY_NAMES", "NEUTRAL", "BASIC", "COMPOUND",
        "ALL_AUS", "AU_NAMES", "get_category", "category_names",
        "RAFDB_BASIC", "RAFDB_COMPOUND", "from_rafdb",
    ):
        assert name in taxonomy.__all__
