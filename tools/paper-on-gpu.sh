#!/usr/bin/env bash
# Regenerate a profile's figures on the GPU device machine (kind nvidia-h200) and bring figures/<PROFILE>/ back.
#
#   bash tools/paper-on-gpu.sh [PROFILE] [PART]      PROFILE: paper (default), cpu or smoke; PART: all (default), 1 or 2
#
# Run from anywhere (it cd's to the repository root); writes only under $OUT, runs/ (ignored) and figures/PROFILE/.
# On the device: the device tool's `run` with carry [".whl"] (wheels from tools/fetch-gpu-wheels.sh), timeout_s 600:
#   call 1:  bash tools/paper-on-gpu.sh paper 1
#   call 2:  bash tools/paper-on-gpu.sh paper 2      (at once, while the machine is still warm, or later: see below)
# Locally, as a simulation at the smoke profile (CPU; no .whl/ needed with the project venv active):
#   OUT=$(mktemp -d) nice -n 19 bash tools/paper-on-gpu.sh smoke
#
# What it does: installs .whl/*.whl into /tmp/site if present (the device has no network), puts /tmp/site and the
# working tree on PYTHONPATH (cohort_inrs is imported from the tree: no `pip install -e .`, whose isolated build
# would download setuptools), checks CUDA (paper only), runs `python3 -m cohort_inrs regenerate --profile PROFILE
# --device cuda` (cpu where there is no GPU) in stages, packs figures/PROFILE/ into $OUT/figures-PROFILE.tar.gz with
# claims.md and manifest.json beside it, runs `python3 -m cohort_inrs bench` (PART all and 2) into $OUT/bench.txt, and
# tees everything to $OUT/log.txt. Unpack here with:  tar -xzf figures-PROFILE.tar.gz -C figures
#
# Time. One device command may run 10 minutes; the script keeps itself inside BUDGET_S (default 540 s = 9 min):
# each regenerate stage runs under `timeout` with what is left (less a reserve for packing and the bench), the
# bench gets at most BENCH_S (default 150 s) of what remains, and the archive is written whatever happened.
# Expected, from `regenerate --profile paper`'s own estimate (29 PFLOP of training, "about 12 min at an assumed
# 40 TFLOP/s" fp32): machine start 1-2 min (not in the command), wheel install ~10 s, then
#   PART 1 (cohorts cohort_fit test_time_lr stable_rank | freeze_sweep freeze_vs_finetune): cohort INRs 1.25 PFLOP
#          (~30 s), FFMLP lr sweep 1.47 (~40 s), freeze sweeps 11.75 (~5 min), notebooks' own work ~1 min: ~7 min.
#   PART 2 (sae_quality atom_gallery atom_localisation ablation | atlas | regime_map, then bench): SAEs at depth 2, 4 plus 2 for
#          C4's re-seeded cohort, ~1 PFLOP each (the estimate's 14.7 PFLOP counts every depth of the first cohort,
#          which only the cpu profile runs): ~3-4 min, ablation scans and atlas pages: a few min; the regime map (5.75
#          PFLOP, 16 small cohort fits and sweeps) whatever time is left, less 60 s kept for the bench (<= 150 s).
# So the whole paper profile (~12 min plus the figures' work) is over one 10-minute command: it runs as two calls.
# A session's device time (15 min, the machine's start included) is as tight as the work: give call 2
# BUDGET_S=<budget_left_s from `status`, less 60>; what does not fit is then cut last-first (regime map, atlas, the bench's
# later entries), and the figures of the stages that finished still come back. TF32=1 (below) if fp32 is too slow.
#
# Why the split is by figure jobs (`regenerate --only`) and not `train --sweep` then `regenerate`: each call then
# leaves finished figures, a manifest and claims of its own, and call 2 needs nothing expensive from call 1: only the
# cohort INRs (about 1 min to retrain). State between the calls:
#   * a warm machine keeps ignored paths: the artifact cache ($COHORT_INRS_CACHE = runs/gpu-cache) and a copy of the
#     figures (runs/gpu-state/PROFILE); figures/PROFILE/ itself is not ignored and may be replaced by the tree sent.
#     The machine goes back after 30 s idle, so call 2 must follow call 1 at once to find them.
#   * on a fresh machine (call 2 later, or in another session): copy call 1's figures-PROFILE.tar.gz and
#     cache-PROFILE.tar.gz (the cache: cohort INRs, sweeps, ~MBs) into .whl/ (carried, ignored) or unpack the
#     figures into figures/PROFILE/ (it travels as an untracked file); call 2 unpacks them. Without the cache, the
#     cohort INRs are retrained; the log prints a hash of their weights in both calls, so a difference shows.
# PART all runs both in one command (smoke, cpu, or paper with TF32=1 if it proves fast enough).
#
# Numerics: fp32, as on the CPU (TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=0 NVIDIA_TF32_OVERRIDE=0, which some CUDA images
# set otherwise); TF32=1 allows TF32 matmuls (faster, ~1e-3 relative error). A probe logs what the GPU actually did.
# If the tree that travels has no .git, the sidecars' `git` is null: pass COHORT_INRS_GIT=<sha> to log the commit.
#
# Files in $OUT (the tool brings back 8 files, 16 MiB each, 64 MiB in all): log.txt, figures-PROFILE.tar.gz,
# claims.md, manifest.json, bench.txt (PART all/2) or cache-PROFILE.tar.gz (PART 1). If the figures don't fit one
# 16 MiB archive (the paper atlas pages can be large), the largest files go to figures-PROFILE-extraN.tar.gz as
# slots allow, and the log names any file left on the device.
# Exit status: 0 ok; 1 a figure job failed; 3 stopped at the time budget; 4 no CUDA for the paper profile;
# 5 wheel install or import failed; 2 usage.
set -uo pipefail

PROFILE=${1:-paper}; PART=${2:-all}
case "$PART" in all|1|2) ;; *) echo "usage: $0 [PROFILE] [all|1|2]" >&2; exit 2 ;; esac
cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD
if [ -z "${OUT:-}" ]; then OUT=$(mktemp -d); echo "OUT was not set; writing to $OUT"; fi
mkdir -p "$OUT"
BUDGET_S=${BUDGET_S:-540}; BENCH_S=${BENCH_S:-150}
T0=$(date +%s)
left() { echo $(( BUDGET_S - ($(date +%s) - T0) )); }
stamp() { echo "=== [$(( $(date +%s) - T0 )) s] $*"; }

# The stages of each part: regenerate runs its jobs in table order; each stage writes manifest.json and claims.md
# (merged with the earlier stages'), so a stage stopped at the time budget loses only itself.
STAGES_1=("cohorts cohort_fit test_time_lr stable_rank" "freeze_sweep freeze_vs_finetune")
STAGES_2=("sae_quality atom_gallery atom_localisation ablation" "atlas")

main() {
  stamp "tools/paper-on-gpu.sh profile=$PROFILE part=$PART budget=${BUDGET_S}s out=$OUT"
  date -u; uname -srm; echo "cwd $ROOT"
  echo "git: $(git rev-parse HEAD 2>/dev/null || echo "${COHORT_INRS_GIT:-unknown (no .git in the tree)}")"
  command -v nvidia-smi >/dev/null && nvidia-smi -L

  if compgen -G ".whl/*.whl" >/dev/null; then
    stamp "installing $(ls .whl/*.whl | wc -l) wheels into /tmp/site"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
      || { echo "wheel install failed"; return 5; }
    export PYTHONPATH=/tmp/site:$ROOT${PYTHONPATH:+:$PYTHONPATH}
  else
    export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
  fi
  export PYTHONUNBUFFERED=1
  export COHORT_INRS_CACHE=${COHORT_INRS_CACHE:-$ROOT/runs/gpu-cache}
  if [ "${TF32:-0}" = 1 ]; then export TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1; unset NVIDIA_TF32_OVERRIDE
  else export TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=0 NVIDIA_TF32_OVERRIDE=0; fi
  echo "PYTHONPATH=$PYTHONPATH COHORT_INRS_CACHE=$COHORT_INRS_CACHE TF32=${TF32:-0}"
  python3 -V
  python3 -c 'import cohort_inrs, torch, papermill; print("cohort_inrs", cohort_inrs.__version__, "from", cohort_inrs.__file__); print("torch", torch.__version__, "cuda", torch.cuda.is_available(), "papermill", papermill.__version__)' \
    || return 5

  if [ "$PROFILE" = paper ]; then
    python3 -c 'import torch; assert torch.cuda.is_available()' || { echo "the paper profile needs CUDA: none here"; return 4; }
  fi
  DEVICE=${COHORT_INRS_DEVICE:-$(python3 -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')}
  if [ "$DEVICE" = cuda ]; then  # what the GPU does with an fp32 matmul: fp32, or TF32 (an image or a flag can switch it)
    python3 - <<'EOF'
import torch
a, b = torch.randn(2048, 2048, device='cuda'), torch.randn(2048, 2048, device='cuda')
ref = a.double().cpu() @ b.double().cpu()
e = ((a @ b).double().cpu() - ref).abs().max().item() / ref.abs().max().item()
kind = 'TF32' if e > 1e-5 else 'fp32'
print(f'{torch.cuda.get_device_name(0)}: fp32 matmul max rel. error {e:.1e} ({kind}); allow_tf32={torch.backends.cuda.matmul.allow_tf32}, '
      f'float32_matmul_precision={torch.get_float32_matmul_precision()}')
EOF
  fi

  FIG=figures/$PROFILE; STATE=runs/gpu-state
  ALL=$(python3 -c 'from cohort_inrs.pipeline import JOBS; print(" ".join(j.name for j in JOBS))') || return 5
  local known=" ${STAGES_1[*]} ${STAGES_2[*]} " extra="" j
  for j in $ALL; do [[ $known == *" $j "* ]] || extra+=" $j"; done   # jobs added to the table later (regime_map) run in part 2,
  [ -n "$extra" ] && STAGES_2+=("${extra# }")                          # as its last stage: within a stage, jobs run in table order
  case "$PART" in 1) STAGES=("${STAGES_1[@]}") ;; 2) STAGES=("${STAGES_2[@]}") ;; all) STAGES=("${STAGES_1[@]}" "${STAGES_2[@]}") ;; esac

  if [ "$PART" = 2 ]; then  # part 1's figures (for one manifest and claims report) and cache (its cohort INRs)
    if [ -f "$FIG/manifest.json" ]; then echo "part 1's figures: in $FIG"
    elif [ -f "$STATE/$PROFILE/manifest.json" ]; then mkdir -p "$FIG"; cp -a "$STATE/$PROFILE/." "$FIG/"; echo "part 1's figures: restored from $STATE (warm machine)"
    elif compgen -G ".whl/figures-$PROFILE*.tar.gz" >/dev/null; then
      mkdir -p figures; for f in .whl/figures-"$PROFILE"*.tar.gz; do tar -xzf "$f" -C figures; done; echo "part 1's figures: unpacked from .whl/"
    else echo "WARNING: part 1's figures not found: manifest.json and claims.md will cover part 2's jobs only"; fi
    if ! compgen -G "$COHORT_INRS_CACHE/cohort/*.safetensors" >/dev/null; then
      if [ -f ".whl/cache-$PROFILE.tar.gz" ]; then mkdir -p "$COHORT_INRS_CACHE"; tar -xzf ".whl/cache-$PROFILE.tar.gz" -C "$COHORT_INRS_CACHE"; echo "cache: unpacked from .whl/"
      else echo "WARNING: no cached cohort INRs: they are retrained (about a minute); compare their sha256 with part 1's log"; fi
    fi
  fi

  local rc=0 r s reserve=30 have_bench=0
  [ "$PART" != 1 ] && { have_bench=1; reserve=$((reserve + 60)); }
  for s in "${STAGES[@]}"; do
    local t=$(( $(left) - reserve ))
    if [ "$t" -lt 30 ]; then stamp "no time left for: $s"; rc=3; break; fi
    stamp "regenerate --only $s (timeout ${t}s)"
    # shellcheck disable=SC2086
    timeout -k 20 "$t" python3 -m cohort_inrs regenerate --profile "$PROFILE" --device "$DEVICE" --only $s; r=$?
    stamp "regenerate stage exit $r"
    if [ "$r" = 124 ] || [ "$r" = 137 ]; then rc=3; break; fi
    [ "$r" != 0 ] && rc=1
  done
  if [ "$rc" = 3 ]; then  # the stopped stage wrote no manifest; the claims report is rebuilt from the sidecars there are
    sleep 3; python3 -c "from cohort_inrs.pipeline import claims_report; claims_report('$PROFILE')" && echo "claims.md rebuilt from the sidecars (manifest.json lacks the stopped stage)"
  fi
  python3 - "$COHORT_INRS_CACHE" <<'EOF'  # the weights' hash (the files also hold train_seconds): equal in parts 1 and 2?
import glob, hashlib, os, sys
from safetensors.torch import load_file
print('cohort INRs in the cache (sha256 of the tensors):')
for p in sorted(glob.glob(os.path.join(sys.argv[1], 'cohort', '*.safetensors'))):
    if p.endswith('.ckpt.safetensors'): continue
    t, h = load_file(p), hashlib.sha256()
    for k in sorted(t): h.update(k.encode()); h.update(t[k].contiguous().numpy().tobytes())
    print(f'  {os.path.basename(p)}  {h.hexdigest()[:16]}')
EOF
  mkdir -p "$STATE"; rm -rf "${STATE:?}/$PROFILE"; [ -d "$FIG" ] && cp -a "$FIG" "$STATE/$PROFILE"

  stamp "packing"
  local budget=$((60 * 1024 * 1024))
  if [ "$PART" = 1 ] && [ -d "$COHORT_INRS_CACHE" ]; then
    tar -czf "$OUT/cache-$PROFILE.tar.gz" -C "$COHORT_INRS_CACHE" --exclude='*.lock' --exclude='.*.tmp' .
    local cs; cs=$(stat -c %s "$OUT/cache-$PROFILE.tar.gz")
    if [ "$cs" -gt $((15 * 1024 * 1024)) ]; then echo "cache archive is $cs bytes: too large to bring back, left out"; rm -f "$OUT/cache-$PROFILE.tar.gz"
    else budget=$((budget - cs)); fi
  fi
  [ -f "$FIG/claims.md" ] && cp "$FIG/claims.md" "$OUT/"
  [ -f "$FIG/manifest.json" ] && cp "$FIG/manifest.json" "$OUT/"
  budget=$((budget - $(cat "$OUT"/claims.md "$OUT"/manifest.json 2>/dev/null | wc -c) - 2 * 1024 * 1024))
  if [ -d "$FIG" ]; then pack_figures "$FIG" "$PROFILE" 4 "$budget" || { [ "$rc" = 0 ] && rc=1; }
  else echo "no $FIG to pack"; rc=1; fi

  if [ "$have_bench" = 1 ]; then
    local b=$(( $(left) - 15 )); [ "$b" -gt "$BENCH_S" ] && b=$BENCH_S
    local quick=""; [ "$PROFILE" != paper ] && quick=--quick   # smoke/cpu: tiny shapes, checks the bench runs
    if [ "$b" -ge 20 ]; then
      stamp "bench $quick (timeout ${b}s)"
      # the bench compares with the fp32 peak (TF32 off), whatever TF32 the figures ran with
      TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=0 NVIDIA_TF32_OVERRIDE=0 timeout -k 10 "$b" python3 -m cohort_inrs bench --device "$DEVICE" $quick 2>&1 | tee "$OUT/bench.txt"
      echo "bench exit ${PIPESTATUS[0]} (124: stopped at its time limit; the lines above are the entries that finished)"
    else echo "no time left for the bench" | tee "$OUT/bench.txt"; fi
  fi
  stamp "done, exit $rc"; ls -l "$OUT"
  return "$rc"
}

# pack_figures DIR PROFILE SLOTS BUDGET: DIR into $OUT/figures-PROFILE.tar.gz (members PROFILE/...); when that is over
# 15.5 MiB, the largest files move to figures-PROFILE-extraN.tar.gz, at most SLOTS archives and BUDGET bytes in all.
pack_figures() {
  python3 - "$@" "$OUT" <<'EOF'
import gzip, os, sys, tarfile
src, prof, slots, budget, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
LIM, HARD = 15 * 2**20 + 2**19, 16 * 2**20  # aim below the tool's 16 MiB a file
files = [os.path.relpath(os.path.join(d, f), src) for d, _, fs in os.walk(src) for f in fs]
est = {m: len(gzip.compress(open(os.path.join(src, m), 'rb').read(), 6)) + 1024 for m in files}  # compressed size, tar header
files.sort(key=est.get)
def pack(path, members):
    with tarfile.open(path, 'w:gz', compresslevel=6) as t:
        for m in sorted(members): t.add(os.path.join(src, m), arcname=os.path.join(prof, m))
    return os.path.getsize(path)
n = len(files)
while n and sum(est[m] for m in files[:n]) > LIM: n -= 1  # the smallest files, as many as fit
keep, moved = files[:n], files[n:][::-1]
main = os.path.join(out, f'figures-{prof}.tar.gz')
size = pack(main, keep)
while size > LIM and keep: moved.insert(0, keep.pop()); size = pack(main, keep)
print(f'figures-{prof}.tar.gz: {len(keep)} of {len(files)} files, {size / 2**20:.1f} MiB')
bins, left_out, total, budget = [], [], 0, budget - size
for m in moved:  # largest first, first fit, at most `slots - 1` more archives within the budget
    b = next((b for b in bins if b[0] + est[m] <= LIM), None)
    if est[m] > LIM or total + est[m] > budget or (b is None and len(bins) >= slots - 1): left_out.append(m); continue
    if b is None: b = [0, []]; bins.append(b)
    b[0] += est[m]; b[1].append(m); total += est[m]
for i, (_, ms) in enumerate(bins, 1):
    s = pack(os.path.join(out, f'figures-{prof}-extra{i}.tar.gz'), ms)
    print(f'figures-{prof}-extra{i}.tar.gz: {len(ms)} files, {s / 2**20:.1f} MiB: {", ".join(sorted(ms))}' + (' (OVER 16 MiB)' if s > HARD else ''))
if left_out:
    print(f'LEFT ON THE DEVICE (too large to bring back in this call, {sum(os.path.getsize(os.path.join(src, m)) for m in left_out) / 2**20:.0f} MiB): {", ".join(sorted(left_out))}')
    sys.exit(1)
EOF
}

set -o pipefail
main 2>&1 | tee -a "$OUT/log.txt"
exit "${PIPESTATUS[0]}"
