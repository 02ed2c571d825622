"A `torchrun` worker for tests/test_distributed.py: data-parallel `train_cohort` on the smoke digits cohort, optionally resuming."
import sys, torch
from cohort_inrs.config import get_config
from cohort_inrs.data import load_cohort
from cohort_inrs.models import CohortINR
from cohort_inrs.fit import train_cohort
from cohort_inrs.distributed import init_distributed, is_main, shutdown
from cohort_inrs.store import save_tensors

def run(backbone, steps, batch_pixels, ckpt, out, init_seed=3):
    "Train `steps` steps with checkpoints every 10 into `ckpt`; rank 0 saves the weights and history to `out`."
    torch.set_num_threads(1); init_distributed('cpu')
    cfg = get_config('smoke'); coh = load_cohort('digits', cfg.data)
    net = CohortINR.from_config(cfg.model, backbone, coh.n_train, coh.channels, coh.resolution, seed=init_seed)
    h = train_cohort(net, coh.coords(), coh.targets('train'), steps, 1e-3, batch_pixels, log_every=5, ckpt_path=ckpt, ckpt_every=10, seed=7, progress=False)
    if is_main(): save_tensors(out, {**net.state_dict(), 'mse': h['mse']})
    shutdown()

if __name__ == '__main__':
    bb, steps, bp, ckpt, out, *init = sys.argv[1:]
    run(bb, int(steps), int(bp), ckpt, out, *map(int, init))
