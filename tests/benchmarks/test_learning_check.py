"""The learning check's verdict (benchmarks/learning_check.py): what fails a family."""

from benchmarks.learning_check import FAMILIES, LEARN_DB, verdict


def test_a_family_that_gains_and_keeps_up_passes():
    failed, text = verdict([10.0, 11.0], [24.0, 25.0], [24.5, 25.2], "")
    assert not failed and "keeps up" in text


def test_a_seed_without_gain_over_its_initial_network_fails():
    failed, text = verdict([10.0, 11.0], [24.0, 11.0 + LEARN_DB / 2], [24.5, 25.2], "")
    assert failed and "does not learn" in text


def test_trailing_the_official_mean_by_more_than_the_spread_fails():
    failed, text = verdict([10.0, 10.0], [20.0, 20.4], [23.0, 23.5], "")
    assert failed and "trails the official mean by 3.05 dB > spread 0.50" in text


def test_without_an_official_side_the_reason_is_given_and_only_learning_is_judged():
    failed, text = verdict([10.0, 10.0], [20.0, 21.0], [], "not run: no checkout given (--hspan-official)")
    assert not failed and "not run: no checkout given" in text


def test_every_hspan_run_fills_whole_epochs_of_the_official_loader():
    """EDSR-PyTorch's epoch is batch·test_every // images repeats of the 14 Set14 images: the driver
    refuses a run whose epoch would not hold exactly the requested iterations."""
    hspan = FAMILIES["hspan"]
    assert hspan.batch * hspan.iters % 14 == 0


def test_being_ahead_of_the_official_mean_by_more_than_the_spread_passes_but_is_said():
    failed, text = verdict([10.0, 10.0], [23.0, 23.5], [20.0, 20.4], "")
    assert not failed and "ahead by more than the spread 0.50" in text
