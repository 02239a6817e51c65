"""Held-out splits (hear_vec.data.splits): the default is the plain per-utterance split; whole
speakers go to one side (name pattern, meta.csv column, explicit list); held-out noise items
are the only ones the validation part ever mixes with, and the training part never does (for
mixing, synthetic and multi-source corpora, babble included); the split is a pure function of
(corpus, seed, settings); bad settings give one-line errors; dev_audio's speakers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hear_vec import rng
from hear_vec.data import (
    BABBLE,
    AudioBank,
    CorpusError,
    MixingCorpus,
    MultiSourceCorpus,
    PairedCorpus,
    Randomization,
    SyntheticCorpus,
    load_corpus,
    speaker_labels,
    split_corpus,
)

SR = 16000


def _corpus(speakers=("ann", "bob", "cy", "dee"), per_speaker=3, noises=6) -> MixingCorpus:
    g = np.random.default_rng(0)
    names = [f"{s}_{j}.wav" for s in speakers for j in range(per_speaker)]
    speech = [0.1 * g.standard_normal(SR // 2) for _ in names]
    noise = [g.standard_normal(SR // 4) for _ in range(noises)]
    return MixingCorpus(AudioBank.from_arrays(speech), AudioBank.from_arrays(noise, wrap=True),
                        names, [f"noise{k}" for k in range(noises)], SR)


@pytest.fixture(scope="module")
def corpus() -> MixingCorpus:
    return _corpus()


def _speakers(part, pattern=r"^([^_]+)_") -> set[str]:
    return set(speaker_labels(part, pattern))


def _drawn_noises(part, draws: int = 20) -> set[int]:
    seen: set[int] = set()
    for d in range(draws):
        seg = part.draw(rng.make_key(d), 64, 2000, 500)
        seen |= set(seg.noise.tolist())
    return seen


def test_default_split_is_the_plain_per_utterance_split(corpus):
    split = split_corpus(corpus, 0.25, seed=3)
    total = len(corpus)
    n_valid = max(1, round(0.25 * total))
    order = torch.argsort(rng.uniform(rng.make_key(3), (total,), dtype=torch.float64),
                          stable=True).tolist()
    assert split.valid.names == [corpus.names[i] for i in sorted(order[:n_valid])]
    assert split.train.names == [corpus.names[i] for i in sorted(order[n_valid:])]
    assert split.train_noises is None and split.valid_noises is None
    assert corpus.split(0.25, seed=3)[1].names == split.valid.names
    # both parts mix with every noise item
    assert _drawn_noises(split.valid) == set(range(6)) == _drawn_noises(split.train)


def test_whole_speakers_go_to_one_side_and_the_split_is_seeded(corpus):
    split = split_corpus(corpus, 0.5, seed=1, speaker_pattern=r"^([^_]+)_")
    valid, train = _speakers(split.valid), _speakers(split.train)
    assert len(valid) == 2 and len(train) == 2 and valid.isdisjoint(train)
    assert set(split.valid_speakers) == valid and set(split.train_speakers) == train
    assert len(split.valid) == 6 and len(split.train) == 6
    again = split_corpus(corpus, 0.5, seed=1, speaker_pattern=r"^([^_]+)_")
    assert again.valid.names == split.valid.names
    others = {tuple(split_corpus(corpus, 0.5, seed=s, speaker_pattern=r"^([^_]+)_")
                    .valid_speakers) for s in range(2, 12)}
    assert len(others) > 1
    held = split_corpus(corpus, speaker_pattern=r"^([^_]+)_", holdout_speakers="cy")
    assert _speakers(held.valid) == {"cy"} and "cy" not in _speakers(held.train)
    # validation draws only ever hold validation utterances
    seg = held.valid.draw(rng.make_key(0), 256, 2000, 500)
    assert {held.valid.names[i].split("_")[0] for i in seg.utterance.tolist()} == {"cy"}


def test_held_out_noises_are_the_only_ones_validation_mixes_with(corpus):
    split = split_corpus(corpus, 0.25, seed=2, speaker_pattern=r"^([^_]+)_",
                         holdout_noise_fraction=0.34)
    names = corpus.noise_names
    valid = {names.index(n) for n in split.valid_noises}
    train = {names.index(n) for n in split.train_noises}
    assert len(valid) == 2 and len(train) == 4 and valid.isdisjoint(train)
    assert _drawn_noises(split.valid) == valid
    assert _drawn_noises(split.train) == train
    explicit = split_corpus(corpus, 0.25, seed=2, holdout_noises=["noise1", "noise4"])
    assert explicit.valid_noises == ["noise1", "noise4"]
    assert _drawn_noises(explicit.valid) == {1, 4}
    assert _drawn_noises(explicit.train) == {0, 2, 3, 5}
    # utterance_audio of a part mixes only with the part's noises too
    for i in range(len(split.valid)):
        assert split.valid.utterance_meta(i)["noise_source"] in split.valid_noises
    report = split.report()
    assert report["valid"]["noises"] == split.valid_noises
    assert report["settings"]["holdout_noise_fraction"] == 0.34


def test_multi_source_split_holds_out_noises_and_babble_speakers():
    base = _corpus(noises=4)
    rand = Randomization(babble_prob=0.5, noise_count=(1, 3))
    multi = MultiSourceCorpus.from_corpus(base, rand)
    split = split_corpus(multi, 0.25, seed=5, speaker_pattern=r"^([^_]+)_",
                         holdout_noises=["noise3"])
    for part, allowed in ((split.valid, {3}), (split.train, {0, 1, 2})):
        speakers = _speakers(part)
        seg, info = part.draw_with_info(rng.make_key(1), 512, 2000, 500)
        used = set(info.noise_items[info.noise_items >= 0].tolist())
        assert used == allowed
        assert (seg.noise == BABBLE).any()
        talkers = info.babble_utterances[info.babble_utterances >= 0].tolist()
        assert {part.names[i].split("_")[0] for i in talkers} <= speakers


def test_synthetic_corpus_noise_holdout():
    synth = SyntheticCorpus(num_utterances=8, utterance_seconds=(0.5, 0.6),
                            noise_clips_per_family=2, noise_seconds=0.3, seed=1)
    split = split_corpus(synth, 0.25, seed=0, holdout_noise_fraction=0.25)
    assert len(split.valid_noises) == 4 and len(split.train_noises) == 12
    valid = {synth.noise_names.index(n) for n in split.valid_noises}
    assert _drawn_noises(split.valid, 5) == valid
    assert _drawn_noises(split.train, 5).isdisjoint(valid)


def test_speaker_column_of_meta_csv():
    g = np.random.default_rng(0)
    clean = [0.1 * g.standard_normal(SR // 2) for _ in range(6)]
    bank = AudioBank.from_arrays(clean + [c * 1.1 for c in clean])
    items = torch.arange(6)
    meta = [{"speaker": s} for s in ("x", "x", "y", "y", "z", "z")]
    paired = PairedCorpus(bank, items, items + 6, [f"u{i}" for i in range(6)], SR, meta=meta)
    split = split_corpus(paired, 0.34, seed=0, speaker_column="speaker")
    assert len(split.valid_speakers) == 1
    assert {m["speaker"] for m in split.valid.meta} == set(split.valid_speakers)
    assert {m["speaker"] for m in split.train.meta}.isdisjoint(split.valid_speakers)
    with pytest.raises(CorpusError, match="no noise recordings to hold out"):
        split_corpus(paired, 0.34, speaker_column="speaker", holdout_noise_fraction=0.5)


@pytest.mark.parametrize("kwargs,needle", [
    ({"speaker_pattern": "("}, "not a valid regular expression"),
    ({"speaker_pattern": r"^zz"}, "does not match utterance"),
    ({"speaker_column": "speaker"}, "is not a column"),
    ({"speaker_pattern": r"^([^_]+)_", "holdout_speakers": ["eve"]}, "unknown speaker 'eve'"),
    ({"speaker_pattern": r"^([^_]+)_", "holdout_speakers": ["ann", "bob", "cy", "dee"]},
     "at least one speaker"),
    ({"holdout_noises": ["noise9"]}, "unknown noise 'noise9'"),
    ({"holdout_noise_fraction": 1.0}, "holdout_noise_fraction"),
    ({"valid_fraction": 0.0}, "valid_fraction"),
    ({"speaker_pattern": r"^(x)?"}, ""),  # matches with an empty group: its own speaker
])
def test_bad_split_settings_give_one_line_errors(corpus, kwargs, needle):
    if not needle:
        split = split_corpus(corpus, 0.25, **kwargs)
        assert len(split.valid) == 3
        return
    with pytest.raises(ValueError) as err:
        split_corpus(corpus, **{"valid_fraction": 0.25, **kwargs})
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_one_speaker_or_one_noise_cannot_be_split():
    one = _corpus(speakers=("ann",), noises=1)
    with pytest.raises(CorpusError, match="1 speaker"):
        split_corpus(one, 0.5, speaker_pattern=r"^([^_]+)_")
    with pytest.raises(CorpusError, match="1 noise item"):
        split_corpus(one, 0.5, holdout_noise_fraction=0.5)


def test_dev_audio_speakers_and_noises(dev_audio):
    corpus = load_corpus(clean_dir=dev_audio / "speech", noise_dir=dev_audio / "noise")
    pattern = r"^([^_]+_[^_]+)"
    assert sorted(set(speaker_labels(corpus, pattern))) == [
        "arctic_aew", "arctic_axb", "arctic_pra", "sbasr_spk1", "sbasr_spk2", "timit_LDC93S1"]
    split = split_corpus(corpus, 0.34, seed=0, speaker_pattern=pattern,
                         holdout_noise_fraction=0.3)
    assert len(split.valid_speakers) == 2 and len(split.valid_noises) == 2
    assert _speakers(split.valid, pattern).isdisjoint(_speakers(split.train, pattern))
    valid = {corpus.noise_names.index(n) for n in split.valid_noises}
    assert _drawn_noises(split.valid, 4) == valid
    assert _drawn_noises(split.train, 4).isdisjoint(valid)
    named = split_corpus(corpus, seed=0, speaker_pattern=pattern,
                         holdout_speakers=["arctic_axb", "sbasr_spk2"],
                         holdout_noises=["cafe_noisereduce", "sb_noise4_machine.wav"])
    assert named.valid_speakers == ["arctic_axb", "sbasr_spk2"]
    assert named.valid_noises == ["cafe_noisereduce.wav", "sb_noise4_machine.wav"]
    assert len(named.valid) == 9 and len(named.train) == 11


def test_excluded_speakers_and_noises_are_never_drawn_by_either_part(corpus):
    from hear_vec.data.splits import exclude

    kept = exclude(corpus, ["bob"], ["noise1", "noise4"], speaker_pattern=r"^([^_]+)_")
    assert _speakers(kept) == {"ann", "cy", "dee"}
    assert _drawn_noises(kept) == {0, 2, 3, 5}
    split = split_corpus(kept, 0.5, seed=1, speaker_pattern=r"^([^_]+)_",
                         holdout_noises=["noise2"])
    for part in (split.train, split.valid):
        assert "bob" not in _speakers(part)
        assert not _drawn_noises(part) & {1, 4}
    with pytest.raises(CorpusError, match="speaker"):
        exclude(corpus, ["zed"], speaker_pattern=r"^([^_]+)_")
    with pytest.raises(CorpusError, match="no noise item"):
        exclude(corpus, noises=[f"noise{k}" for k in range(6)])
