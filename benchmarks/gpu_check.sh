#!/usr/bin/env bash
# The accelerator measurements that issues #3 and #15 ask for, as one command (from any folder: it
# runs in the repository root).
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]        (default: $OUT, else the repository's benchmarks/results/gpu)
#   bash benchmarks/gpu_check.sh -h | --help      (this text)
#
# 0. the devices JAX sees; where JAX runs on the CPU (no accelerator found) it fails and the script
#    stops, as the other steps would record CPU figures, unless ALLOW_CPU=1;
# 1. the paper's four MuJoCo tasks (mjx/*-v4): raw env steps/s against BPO training steps/s at
#    thousands of envs, and the projected wall-clock of the paper's whole MuJoCo figure;
# 2. brax/ant, the same columns (its train/raw ratio is 57% on a 2-core CPU);
# 3. MuJoCo Warp against MJX's JAX implementation (impl=warp), on Ant and Hopper;
# 4. a short BPO learning run on mjx/Hopper-v4, 2 seeds in one program (fast/ preset);
# 5. Atari (paper/Pong settings, EnvPool backend): raw emulator steps/s against BPO and PPO
#    training at 8, 32 and 128 envs (on a 2-core CPU the Nature CNN holds training to 3-5% of raw);
# 6. what true float32 costs: step 1's Hopper and Ant again at --matmul-precision default (TF32
#    allowed), against step 1's highest (the default); rates in log.txt only.
#
# A device session has 15 minutes of device time in all (starts included), 10 minutes a call, and
# carries at most 64 MiB (the working tree, ~7 MB, plus the wheels), so plan two calls on one warm
# machine:
#   A. wheels of what the device image lacks for steps 1, 2, 4 and 6 (Python 3.12, per the device
#      README; ~32 MB on 2026-12-07): gymnax, brax, mujoco with mujoco-core, mujoco-studio, glfw and
#      pyopengl, mujoco-mjx, gymnasium, farama-notifications, trimesh, jaxopt, ml-collections,
#      tensorboardX; SKIP="3 5", and if one call cannot hold steps 0-4 and 6 (the MJX compiles
#      dominate, Humanoid's the longest), SKIP="3 5 6" TASKS=... first, then the rest;
#   B. step 5 alone (SKIP="1 2 3 4 6"): envpool (53 MB), ale-py, dm-env, optree, gymnasium and gymnax,
#      and EnvPool's Atari ROMs, the atari/ folder of envpool_assets (0.6 MB) as a package of its
#      own: the envpool-assets wheel holds every suite's assets and does not fit.
# Step 3 needs warp-lang, whose 149 MB wheel cannot travel: a step whose package is missing is
# logged as skipped, not failed.  Each step writes its results as soon as it ends, and a failing
# step does not stop the others; the script exits 1 at the end if any step failed.  At most 8
# files land in OUT_DIR (the device tool brings back 8).  Overrides, as environment variables:
# SIZES (env counts, default 4096), UPDATES (timed updates per program, default 4), TASKS (step
# 1), LEARN_STEPS and LEARN_ENVS (step 4, default 20000000 steps on the preset's 2048 envs),
# ATARI_SIZES (step 5, default 8,32,128), SKIP (steps to leave out, e.g. "3 4"; step 0, the device
# check, always runs).  Wheels in .whl/ are installed first when that folder exists.
#
# CPU dry run of the plumbing (about 6 minutes on a 2-core CPU):
#   ALLOW_CPU=1 SIZES=4 UPDATES=1 TASKS=mjx/Hopper-v4 LEARN_ENVS=8 LEARN_STEPS=1024 ATARI_SIZES=8 SKIP="3 6" \
#       bash benchmarks/gpu_check.sh /tmp/gpu
set -uo pipefail

if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
    sed -n '2,/^set -uo/{/^set -uo/d;s/^# \{0,1\}//;p}' "$0"
    exit 0
fi

# An OUT_DIR given is relative to the folder the script was started in; then to the repository
# root, which the steps' paths (benchmarks/..., .whl/) and PYTHONPATH are relative to.
out=${1:-${OUT:-}}
[ -z "$out" ] || [[ $out == /* ]] || out="$PWD/$out"
cd "$(dirname "$0")/.." || exit 1
out=${out:-benchmarks/results/gpu}
sizes=${SIZES:-4096}
updates=${UPDATES:-4}
tasks=${TASKS:-mjx/Ant-v4,mjx/Hopper-v4,mjx/Humanoid-v4,mjx/Swimmer-v4}
learn_steps=${LEARN_STEPS:-20000000}
learn_envs=${LEARN_ENVS:-2048}
skip=" ${SKIP:-} "
log="$out/log.txt"
if ! mkdir -p "$out" 2>/dev/null || ! : >>"$log" 2>/dev/null; then
    echo "error: cannot write to $out; give a folder that can be written as OUT_DIR" >&2
    exit 1
fi

if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH="/tmp/site:$PWD"
else
    export PYTHONPATH="$PWD"
fi
export PYTHONUNBUFFERED=1

step() {  # step N "title" command...: run unless skipped, log without Warp's per-module lines
    local n=$1 title=$2
    shift 2
    [[ $skip == *" $n "* ]] && return 0
    echo "== $n. $title ($(date -u +%FT%TZ))" | tee -a "$log"
    local module=${needs[$n]:-}
    if [ -n "$module" ] && ! python3 -c "import $module" >/dev/null 2>&1; then
        echo "== $n. skipped: the module $module is not installed" | tee -a "$log"
        missing+=("$n")
        return 0
    fi
    "$@" 2>&1 | grep --line-buffered -v -e '^Module ' -e 'solver iterations limit' -e 'disable the print' | tee -a "$log"
    local rc=${PIPESTATUS[0]}
    echo "== $n. exit $rc" | tee -a "$log"
    # Later steps still run; the exit status at the end says whether all of them passed.
    [ "$rc" -eq 0 ] || failed+=("$n")
}
failed=()
missing=()
declare -A needs=([3]=warp [5]=envpool)  # packages that may not travel (see above): their steps are skipped

bench() { python3 benchmarks/throughput.py --num-envs "$sizes" --updates "$updates" "$@"; }

learn() {  # the run folder holds more files than come back: keep its summary, metrics and curve
    local run=/tmp/gpu-check-hopper
    rm -rf "$run"
    python3 -m bpo_jax train --preset fast/Hopper-v4 --algo bpo --seeds 2 --num-envs "$learn_envs" \
        --total-steps "$learn_steps" \
        --no-tensorboard --out "$run" || return
    local rc=0
    for f in summary.json metrics.csv curve.png; do cp "$run/$f" "$out/hopper_bpo_$f" || rc=1; done
    return $rc
}

devices() {  # on the CPU the later steps would record CPU figures as the accelerator's
    python3 -c "
import jax, os, sys
print(jax.__version__, jax.devices())
if jax.default_backend() == 'cpu' and os.environ.get('ALLOW_CPU') != '1':
    sys.exit('error: JAX sees no accelerator (backend cpu); set ALLOW_CPU=1 for a CPU dry run')"
}

skip=${skip// 0 / }  # step 0 always runs: SKIP="0 3 5" must not record CPU figures as the accelerator's
step 0 "devices" devices
if [ ${#failed[@]} -gt 0 ]; then
    echo "== FAILED step 0: stopping (see $log)" | tee -a "$log"
    exit 1
fi
step 1 "paper tasks: raw vs BPO training, figure projection" bench --envs "$tasks" --paper-projection --out "$out/throughput_mjx.json"
step 2 "brax/ant: raw vs BPO training" bench --envs brax/ant --out "$out/throughput_brax.json"
step 3 "MuJoCo Warp against MJX-JAX" bench --envs mjx/Ant-v4,mjx/Hopper-v4 --impls jax,warp --out "$out/warp_vs_jax.json"
step 4 "learning: BPO on mjx/Hopper-v4, 2 seeds" learn
step 5 "Atari: raw emulators vs BPO and PPO training (paper/Pong)" python3 benchmarks/throughput.py \
    --preset paper/Pong --algos bpo,ppo --num-envs "${ATARI_SIZES:-8,32,128}" --num-steps 128 --updates 2 \
    --out "$out/throughput_atari.json"
step 6 "TF32 allowed: mjx Hopper and Ant at --matmul-precision default" \
    bench --envs mjx/Hopper-v4,mjx/Ant-v4 --matmul-precision default

if [ ${#failed[@]} -gt 0 ]; then
    echo "== FAILED steps: ${failed[*]} (see $log)" | tee -a "$log"
    exit 1
fi
if [ ${#missing[@]} -gt 0 ]; then
    echo "== all steps run passed; skipped, a package missing: ${missing[*]}" | tee -a "$log"
else
    echo "== all steps passed" | tee -a "$log"
fi
