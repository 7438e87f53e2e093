"""The multi-seed evidence the chapters quote: every shipped file loads and says how it was made."""

import pytest

from nin_utils import load_evidence
from nin_utils.evidence import EVIDENCE_DIR, mean_sd

NAMES = sorted(p.stem for p in EVIDENCE_DIR.glob("*.json"))


def test_the_chapters_evidence_is_shipped():
    assert {"ablation", "ablation_more", "d2l_224", "gap_vs_fc", "gap_vs_fc_small_data", "one_vs_two_1x1"} <= set(NAMES)


# d2l's network at its own 224 px, one epoch on 2,000 images: one seed, as a check, not a comparison.
ONE_SEED = {"d2l_224"}


@pytest.mark.parametrize("name", NAMES)
def test_each_file_has_three_seeds_per_variant_and_its_provenance(name):
    evidence = load_evidence(name)
    assert evidence.command.startswith("python benchmarks/accuracy.py") and evidence.machine and evidence.date
    for variant, runs in evidence.accuracies.items():
        assert len(runs) >= (1 if name in ONE_SEED else 3), variant
        assert all(0.0 <= acc <= 1.0 for accs in runs.values() for acc in accs)
    rows = evidence.table().splitlines()
    assert len(rows) == 1 + len(evidence.accuracies) and "mean ± sd" in rows[0]


def test_mean_and_sample_standard_deviation():
    assert mean_sd([0.90, 0.92, 0.94]) == "0.920 ± 0.020"
    assert mean_sd([0.5]) == "0.500 ± 0.000"


def test_an_unknown_name_lists_the_known_ones():
    with pytest.raises(FileNotFoundError, match="No evidence named 'nope': the course ships .*ablation"):
        load_evidence("nope")
