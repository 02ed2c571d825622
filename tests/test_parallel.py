"Independent builds in worker processes (`distributed.parallel_map`): the artifacts of one process, bit for bit."
import torch
from cohort_inrs.config import get_config
from cohort_inrs.distributed import parallel_map
from cohort_inrs.fit import cohort_model
from cohort_inrs.sae import sae_model


def _same_module(a, b): # two modules
    "Every parameter and buffer equal, bit for bit (NaN where the other has NaN: a TopK SAE's unused threshold)."
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k].nan_to_num(7.), sb[k].nan_to_num(7.)) and torch.equal(sa[k].isnan(), sb[k].isnan()) for k in sa)


def test_cohort_inrs_and_saes_built_in_workers_equal_those_built_here(tmp_path, monkeypatch):
    "Two SAEs (and the two cohort INRs under them) built by two one-thread spawned workers equal the ones built again in this process."
    cfg, calls = get_config('smoke'), [('siren', 'digits@8', 1), ('ffmlp', 'digits@8', 2)]
    monkeypatch.setenv('COHORT_INRS_CACHE', str(tmp_path/'pooled'))
    pooled = parallel_map(sae_model, [(cfg, *c) for c in calls], workers=2, kw=dict(progress=False))
    monkeypatch.setenv('COHORT_INRS_CACHE', str(tmp_path/'here'))  # trained again, in this process
    here = parallel_map(sae_model, [(cfg, *c) for c in calls], workers=1, kw=dict(progress=False))
    assert len(list((tmp_path/'here').rglob('*.safetensors'))) == 4  # two cohort INRs and two SAEs, trained here
    for (sae_p, hist_p, net_p, _), (sae_h, hist_h, net_h, _) in zip(pooled, here):
        assert _same_module(sae_p, sae_h) and _same_module(net_p, net_h)
        assert torch.equal(hist_p['fvu'], hist_h['fvu'])
    assert pooled[0][2].backbone == 'siren' and pooled[1][2].backbone == 'ffmlp'  # in the calls' order
    nets = parallel_map(cohort_model, [(cfg, 'siren', 'digits@8')], workers=2, kw=dict(progress=False))  # one call: here
    assert _same_module(nets[0][0], here[0][2])
