"Claim tests for the freeze claims: a gap must beat the fit-to-fit noise, and a tie counts only if a planted gap would show."
import torch
from cohort_inrs.claim_tests import gap_test, as_good_test, freeze_rule_test
from cohort_inrs.fit import summarise_sweep

def test_gap_test_known_t_statistic():
    # differences 3, 4, 5 dB: mean 4, sd 1; against a 0.5 dB margin t = 3.5 / (1 / sqrt 3) = 6.06, one-sided p = 0.0131 (2 df)
    r = gap_test([53., 54, 55], [50., 50, 50], min_gap=0.5)
    assert r['detected'] and abs(r['gap'] - 4) < 1e-12 and abs(r['sd'] - 1) < 1e-12 and abs(r['p'] - 0.0131) < 5e-4, r
    assert not gap_test([50., 50, 50], [53., 54, 55])['detected']  # the other way round: b is better, no gap

def test_as_good_test_needs_the_planted_gap_to_call_a_tie():
    ref = torch.tensor([50., 51., 49., 50.5, 49.5, 50.2])
    assert as_good_test(ref, ref - torch.tensor([0.1, -0.2, 0.3, 0.0, 0.1, -0.1]))['status'] == 'holds'
    assert as_good_test(ref, ref - 3 + torch.tensor([0.2, -0.2, 0.1, 0.0, -0.1, 0.0]))['status'] == 'fails'
    noisy = ref + torch.tensor([4., -4., 3., -3., 2., -2.])  # as good on average, but a 2 dB gap would hide in this spread
    r = as_good_test(ref, noisy)
    assert r['status'] == 'cannot tell' and not r['control']['detected'] and not r['null']['detected'], r

def test_late_readout_ignores_a_last_step_jump_and_the_rule_test_reads_it():
    # L = 2: depth 1 sits 3 dB below depth 2 on every image, but depth 2's fits drop 10 dB at the very last logged step
    configs = ['scratch@0', 'finetune@0', 'reinit@1', 'transfer@1', 'transfer@2']
    base = torch.tensor([30., 44., 40., 39., 43.])[:, None, None] + torch.tensor([0., 0.4, -0.3])[None, None, :]
    psnr = base[..., None].repeat(1, 11, 1, 1)  # (configs, steps, images, seeds)
    psnr[4, -1] -= 10
    sw = dict(configs=configs, depths=[0, 0, 1, 1, 2], step=torch.arange(0, 101, 10), psnr=psnr)
    s = summarise_sweep(sw, 1, late_window=50)
    assert s['best_depth'] == 1 and s['best_depth_late_median'] == 2  # the last step alone picks the wrong depth
    r = freeze_rule_test(s['depth_readout'], 1, control_gap=2.)
    assert (r['best'], r['status']) == (2, 'fails') and abs(r['real']['gap'] - 3) < 1e-5, r

def test_replicates_vote_and_disagreement_reads_unstable():
    from cohort_inrs.claim_tests import replicate_status, claim_verdict
    from cohort_inrs.config import get_config, replicate_configs
    ref = torch.tensor([50., 51., 49., 50.5, 49.5, 50.2])
    tie, gap = ref - torch.tensor([0.1, -0.2, 0.3, 0.0, 0.1, -0.1]), ref - 3 + torch.tensor([0.2, -0.2, 0.1, 0.0, -0.1, 0.0])
    # three replicate encoders of one pair: two ties and one 3 dB shortfall -> the tie stands, 2 of 3
    r = replicate_status([as_good_test(ref, b)['status'] for b in (tie, tie, gap)])
    assert (r['status'], r['k'], r['S'], r['said']) == ('holds', 2, 3, 'holds in 2 of 3'), r
    # one of each: no status has 2/3, the part is unstable, and a claim of unstable parts is unstable (not "not reproduced")
    noisy = ref + torch.tensor([4., -4., 3., -3., 2., -2.])
    u = replicate_status([as_good_test(ref, b)['status'] for b in (tie, gap, noisy)])
    assert u['status'] == 'unstable' and u['counts'] == {'holds': 1, 'fails': 1, 'cannot tell': 1}, u
    assert claim_verdict({'a': u['status'], 'b': 'cannot tell'}) == 'unstable' and claim_verdict([u['status'], 'holds']) == 'partially'
    # replicate r is the experiment from seed + r; replicate 0 is the experiment itself (its cached artifacts serve both)
    cfg = get_config('cpu', seed=4)
    reps = replicate_configs(cfg)
    assert [c.seed for c in reps] == [4, 5, 6] and reps[0] == cfg and all(c.data == cfg.data and c.transfer == cfg.transfer for c in reps)
