"""Device-resident corpora for the denoising environment.

``load_corpus(data)`` turns any source — ``"synthetic"`` (the built-in generator, no files), a
seed-format meta.csv, a folder with clean/ + noisy/, or clean + noise folders mixed on the fly
— into a :class:`Corpus` whose audio sits in one int16 bank on the device and whose
:meth:`Corpus.draw` samples a batch of episode segments without leaving the device.
``python -m hear_vec.data.demo --out DIR`` writes a small corpus in the seed's layout.

Several sources at once and domain randomization: :class:`MultiSourceCorpus` (speech from any
mix of sources, noise from any mix, drawn by weight) with a :class:`Randomization` (level,
tilt / EQ, band limits, reverb, 1-4 overlapping noises, babble); specs ``LOCATION[:WEIGHT]``
(:func:`load_sources`, or ``load_corpus`` with lists). :func:`split_corpus` holds out whole
speakers and noise recordings for validation.
"""

from hear_vec.data.bank import (
    DEFAULT_TAIL,
    AudioBank,
    Corpus,
    CorpusError,
    MixingCorpus,
    PairedCorpus,
    Segments,
    mix_at_snr,
    snr_gain,
)
from hear_vec.data.files import (
    load_meta_csv,
    load_mixing_folders,
    load_pair_folder,
    read_mono,
)
from hear_vec.data.loading import load_corpus
from hear_vec.data.multi import BABBLE, PAIRED, DrawInfo, MultiSourceCorpus
from hear_vec.data.randomize import (
    PRESETS,
    Randomization,
    RandomizationError,
    resolve_randomization,
)
from hear_vec.data.sources import SourceSpec, load_sources, parse_source, parse_sources
from hear_vec.data.splits import CorpusSplit, speaker_labels, split_corpus
from hear_vec.data.synthetic import (
    NOISE_FAMILIES,
    SyntheticCorpus,
    synthesize_noise,
    synthesize_speech,
    synthetic_noise_bank,
)

__all__ = [
    "Segments",
    "Corpus",
    "PairedCorpus",
    "MixingCorpus",
    "SyntheticCorpus",
    "AudioBank",
    "DEFAULT_TAIL",
    "CorpusError",
    "load_corpus",
    "load_meta_csv",
    "load_pair_folder",
    "load_mixing_folders",
    "read_mono",
    "mix_at_snr",
    "NOISE_FAMILIES",
    "synthesize_speech",
    "synthesize_noise",
    "synthetic_noise_bank",
    "snr_gain",
    "MultiSourceCorpus",
    "DrawInfo",
    "PAIRED",
    "BABBLE",
    "Randomization",
    "RandomizationError",
    "PRESETS",
    "resolve_randomization",
    "SourceSpec",
    "parse_source",
    "parse_sources",
    "load_sources",
    "CorpusSplit",
    "split_corpus",
    "speaker_labels",
]
