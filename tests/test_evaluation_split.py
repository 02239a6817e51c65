"""hear_vec.evaluation.split: held-out speakers / noise recordings chosen from names.

Guarantees: held-out groups never appear on the training side (and every name lands on
exactly one side), explicit lists are honoured, the seeded fraction is reproducible and
equals Corpus.split's choice for an utterance-level split, and bad requests raise one clear
ValueError.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hear_vec.evaluation import choose_holdout, group_names, group_of, parse_name_list

DEV_NAMES = [
    "arctic_aew_a0001.wav", "arctic_aew_a0002.wav", "arctic_aew_a0003.wav",
    "arctic_axb_a0004.wav", "arctic_axb_a0005.wav", "arctic_axb_a0006.wav",
    "arctic_pra_a0010.wav", *[f"sbasr_spk1_snt{i}.wav" for i in range(1, 7)],
    *[f"sbasr_spk2_snt{i}.wav" for i in range(1, 7)], "timit_LDC93S1.wav"]
PATTERN = r"^([^_]+_[^_]+)"


def test_group_of_uses_group_1_of_the_stem():
    assert group_of("arctic_aew_a0001.wav", PATTERN) == "arctic_aew"
    assert group_of("sbasr_spk1_snt3.flac", PATTERN) == "sbasr_spk1"
    assert group_of("sub/p232_001.wav", r"(p\d+)_\d+$") == "p232"
    assert group_of("p232/p232_001.wav", r"^(p\d+)/") == "p232"      # folders are kept
    assert group_of("spk1.2_a", r"^([^_]+)_") == "spk1.2"              # not an audio suffix
    assert group_of("spk7-utt.wav", r"^spk\d") == "spk7"        # no group: the whole match
    assert group_of("timit_LDC93S1.wav", PATTERN) == "timit_LDC93S1"
    assert group_of("sub/cafe.wav", None) == "cafe"
    assert group_of("p232_001.wav", r"^(p\d+)_") == "p232"


def test_group_names_sorts_groups_and_keeps_member_order():
    groups = group_names(DEV_NAMES, PATTERN)
    assert list(groups) == ["arctic_aew", "arctic_axb", "arctic_pra", "sbasr_spk1",
                            "sbasr_spk2", "timit_LDC93S1"]
    assert groups["arctic_axb"] == DEV_NAMES[3:6]


def _check_disjoint(split, names, pattern):
    assert set(split.train) | set(split.held_out) == set(names)
    assert not set(split.train) & set(split.held_out)
    held = set(split.held_out_groups)
    assert held and set(split.train_groups) and not held & set(split.train_groups)
    assert all(group_of(n, pattern) in held for n in split.held_out)
    assert all(group_of(n, pattern) not in held for n in split.train)


def test_explicit_speakers_are_honoured():
    split = choose_holdout(DEV_NAMES, pattern=PATTERN, holdout=["sbasr_spk2", "arctic_axb"])
    assert split.held_out_groups == ("arctic_axb", "sbasr_spk2")
    assert split.held_out == tuple(DEV_NAMES[3:6] + DEV_NAMES[13:19])
    _check_disjoint(split, DEV_NAMES, PATTERN)
    # explicit lists override the fraction; comma-separated strings are accepted
    again = choose_holdout(DEV_NAMES, pattern=PATTERN, holdout=["arctic_axb, sbasr_spk2"],
                           fraction=0.9)
    assert again == split
    # a label written with its audio extension (as a corpus may name it) is the same speaker
    timit = choose_holdout(DEV_NAMES, pattern=PATTERN, holdout=["timit_LDC93S1.wav"])
    assert timit.held_out == ("timit_LDC93S1.wav",)


def test_explicit_noises_match_by_stem_or_name():
    noises = ["cafe.wav", "machine.wav", "babble.wav"]
    by_stem = choose_holdout(noises, holdout=["cafe"])
    by_name = choose_holdout(noises, holdout=["cafe.wav"])
    assert by_stem.held_out == by_name.held_out == ("cafe.wav",)
    assert by_stem.train == ("machine.wav", "babble.wav")


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("fraction, expected", [(0.3, 2), (0.01, 1), (0.99, 5)])
def test_fraction_holds_out_round_f_times_groups_disjointly(seed, fraction, expected):
    split = choose_holdout(DEV_NAMES, pattern=PATTERN, fraction=fraction, seed=seed)
    assert len(split.held_out_groups) == expected       # clamped to [1, G - 1]
    _check_disjoint(split, DEV_NAMES, PATTERN)


def test_fraction_is_seeded_and_the_seed_matters():
    a = choose_holdout(DEV_NAMES, pattern=PATTERN, fraction=0.5, seed=3)
    assert a == choose_holdout(DEV_NAMES, pattern=PATTERN, fraction=0.5, seed=3)
    # the choice depends on the group names only, not on the order of the input list
    assert a.held_out_groups == choose_holdout(list(reversed(DEV_NAMES)), pattern=PATTERN,
                                               fraction=0.5, seed=3).held_out_groups
    choices = {choose_holdout(DEV_NAMES, pattern=PATTERN, fraction=0.5, seed=s).held_out_groups
               for s in range(10)}
    assert len(choices) > 3
    streams = {choose_holdout(DEV_NAMES, pattern=PATTERN, fraction=0.5, seed=0,
                              stream=k).held_out_groups for k in range(10)}
    assert len(streams) > 3


def test_utterance_level_fraction_equals_corpus_split():
    from hear_vec.data import AudioBank, MixingCorpus

    names = [f"utt{i:02d}.wav" for i in range(13)]
    rng = np.random.default_rng(0)
    bank = AudioBank.from_arrays([rng.standard_normal(1600).astype(np.float32) for _ in names])
    noise = AudioBank.from_arrays([rng.standard_normal(3200).astype(np.float32)], wrap=True)
    corpus = MixingCorpus(bank, noise, names, ["n.wav"], 16000)
    for seed in range(4):
        for fraction in (0.1, 0.25, 0.5):
            _, valid = corpus.split(fraction, seed=seed)
            split = choose_holdout(names, fraction=fraction, seed=seed)
            assert list(split.held_out) == list(valid.names), (seed, fraction)


def test_parse_name_list():
    assert parse_name_list("a, b,,c ") == ["a", "b", "c"]
    assert parse_name_list(["a,b", "c"]) == ["a", "b", "c"]
    assert parse_name_list("") is None and parse_name_list(None) is None


@pytest.mark.parametrize("kwargs, match", [
    ({"holdout": ["nobody"]}, "unknown speaker"),
    ({"holdout": ["arctic_aew", "arctic_axb", "arctic_pra", "sbasr_spk1", "sbasr_spk2",
                  "timit_LDC93S1"]}, "every speaker"),
    ({"fraction": 1.5}, "fraction"),
    ({}, "list or a fraction"),
])
def test_bad_requests_raise_one_clear_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        choose_holdout(DEV_NAMES, pattern=PATTERN, what="speaker", **kwargs)


def test_bad_patterns_and_names_raise():
    with pytest.raises(ValueError, match="does not match"):
        choose_holdout(["a_b_1.wav", "plain.wav"], pattern=r"^(\w+?)_", fraction=0.5)
    with pytest.raises(ValueError, match="not a valid regular expression"):
        group_of("a_b.wav", r"^(\w+")
    with pytest.raises(ValueError, match="at least 2"):
        choose_holdout(["spk1_a.wav", "spk1_b.wav"], pattern=r"^(spk\d)", fraction=0.5)
    with pytest.raises(ValueError, match="duplicate"):
        choose_holdout(["a.wav", "a.wav", "b.wav"], fraction=0.5)


def test_torch_global_rng_is_untouched():
    torch.manual_seed(11)
    expected = torch.rand(3)
    torch.manual_seed(11)
    choose_holdout(DEV_NAMES, pattern=PATTERN, fraction=0.5, seed=2)
    assert torch.equal(torch.rand(3), expected)
