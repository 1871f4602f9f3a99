#!/usr/bin/env bash
# One-command check of metajax on a GPU (issue 16, item 5), about 8 minutes on one H200:
#
#   info   GPU model (nvidia-smi, else jax.devices()), jax / jaxlib, import preflight
#   env    env-steps/s of spread and treasure up to batch 262144 (env_throughput.py)
#   train  MADDPG training throughput at 1, 16, 64 and 256 seeds (train_throughput.py)
#   mesa   a few chunks of `metajax run experiments/mesa_mpe_2a5l.py --preset paper`
#   mra    a few chunks of `metajax run experiments/mra_fig5_resource.py --preset paper`
#   sweep  one 16-point sweep (4 actor learning rates x 4 tau) of experiments/maddpg_climb.py
#
# Every stage runs under `timeout` (its own limit, and never past the whole budget); a stage
# that fails or times out is recorded and the script goes on. The summary, $OUT/gpu_check.json,
# is rewritten after every stage. Files in $OUT: gpu_check.json, env.json, train.json and
# gpu_check.log (every stage's output); the probes' run directories live in a scratch
# directory (removed at the end unless --keep-work or GPU_CHECK_WORK is set).
#
#   bash benchmarks/gpu_check.sh                 # on the GPU machine; OUT defaults to runs/gpu_check
#   bash benchmarks/gpu_check.sh --cpu-smoke     # the same stages, CI-sized, on the CPU
#
# Options: --out DIR (default $OUT, else runs/gpu_check), --budget SECONDS (whole run),
# --stages info,env,... (a subset), --timeout STAGE=SECONDS (repeatable), --wheels DIR (pip
# wheels installed into the scratch directory when the preflight imports fail; default .whl/
# when it exists), --keep-work. PYTHON picks the interpreter (default .venv/bin/python, else
# python3). Exit status: 0 when no stage failed or timed out, 1 otherwise, 2 for bad arguments.
set -u -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 2
ARGS=("$@")
MODE=gpu
BUDGET=""
STAGES=info,env,train,mesa,mra,sweep
WHEELS=""
KEEP=0
declare -A LIMIT=()

usage() { sed -n '2,/^set -u/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
        --cpu-smoke) MODE=cpu-smoke ;;
        --out) OUT=${2:?--out needs a directory}; shift ;;
        --budget) BUDGET=${2:?--budget needs seconds}; shift ;;
        --stages) STAGES=${2:?--stages needs a list}; shift ;;
        --timeout) LIMIT[${2%%=*}]=${2#*=}; shift ;;
        --wheels) WHEELS=${2:?--wheels needs a directory}; shift ;;
        --keep-work) KEEP=1 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "gpu_check.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
for s in ${STAGES//,/ }; do
    case ",info,env,train,mesa,mra,sweep," in
        *",$s,"*) ;;
        *) echo "gpu_check.sh: unknown stage $s (stages: info,env,train,mesa,mra,sweep)" >&2
           exit 2 ;;
    esac
done

# --- sizes of each mode -------------------------------------------------------------------------
if [ "$MODE" = gpu ]; then
    BUDGET=${BUDGET:-470}
    declare -A DEFAULT=([info]=30 [env]=70 [train]=100 [mesa]=120 [mra]=90 [sweep]=60)
    ENV_BATCHES=1,1024,16384,65536,262144
    ENV_ARGS=(--target 1000000 --min-time 0.5 --max-time 3)
    TRAIN_SEEDS=1,16,64,256
    TRAIN_ARGS=(--chunk-updates 10)
    MESA_CHUNKS=2
    MRA_CHUNKS=3
    SWEEP_ARGS=(--seeds 4 --set total_env_steps=20000)
else
    BUDGET=${BUDGET:-900}  # generous: a loaded 2-core CI machine (mostly compilation)
    declare -A DEFAULT=([info]=60 [env]=180 [train]=180 [mesa]=240 [mra]=240 [sweep]=180)
    ENV_BATCHES=1,64
    ENV_ARGS=(--target 2000 --min-steps 5 --max-steps 50 --min-time 0.05 --max-time 0.5)
    TRAIN_SEEDS=1,2
    TRAIN_ARGS=(--quick --chunk-updates 2)
    MESA_CHUNKS=2
    MRA_CHUNKS=2
    SWEEP_ARGS=(--seeds 2 --set total_env_steps=400 chunk_updates=10 maddpg.learning_starts=100)
    export JAX_PLATFORMS=cpu
    # CI-sized stages are mostly compilation: metajax's fast-compile profile (metajax/__init__.py)
    export METAJAX_FAST_COMPILE=${METAJAX_FAST_COMPILE:-1}
fi
RESERVE=3      # seconds kept for the summary after the last stage
MIN_STAGE=10   # a stage gets at least this long, or is skipped

# --- environment --------------------------------------------------------------------------------
if [ -n "${PYTHON:-}" ]; then
    PY=$PYTHON
elif [ -x "$ROOT/.venv/bin/python" ]; then
    PY=$ROOT/.venv/bin/python
else
    PY=python3
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 WANDB_MODE=disabled
OUT=${OUT:-$ROOT/runs/gpu_check}
mkdir -p "$OUT" || exit 2
OUT=$(cd "$OUT" && pwd)
if [ -n "${GPU_CHECK_WORK:-}" ]; then
    WORK=$GPU_CHECK_WORK
    KEEP=1
    mkdir -p "$WORK" || exit 2
else
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX") || exit 2
fi
cleanup() { if [ "$KEEP" = 0 ]; then rm -rf "$WORK"; fi; }
trap cleanup EXIT
rm -f "$OUT/gpu_check.json" "$OUT/gpu_check.log" "$OUT/env.json" "$OUT/train.json"
STARTED=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
COMMAND="bash benchmarks/gpu_check.sh${ARGS[*]:+ ${ARGS[*]}}"

say() { echo "[gpu_check $(printf '%4d' "$SECONDS")s] $*"; }

summary() {  # [--final --print]
    "$PY" "$ROOT/benchmarks/_gpu_check.py" summary --work "$WORK" --out "$OUT" \
        --mode "$MODE" --stages "$STAGES" --env-batches "$ENV_BATCHES" \
        --train-seeds "$TRAIN_SEEDS" --budget "$BUDGET" --elapsed "$SECONDS" \
        --started "$STARTED" --command "$COMMAND" "$@"
}

selected() { case ",$STAGES," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

# run_stage NAME COMMAND...: run under its time limit, record exit status and wall time.
run_stage() {
    local name=$1 limit left t0 t1 rc
    shift
    selected "$name" || return 0
    limit=${LIMIT[$name]:-${DEFAULT[$name]}}
    left=$((BUDGET - SECONDS - RESERVE))
    if ((limit > left)); then limit=$left; fi
    if ((limit < MIN_STAGE)); then
        printf '{"skipped": "no time left in the %s s budget"}\n' "$BUDGET" >"$WORK/$name.rc"
        say "$name: skipped (no time left in the budget)"
        summary >/dev/null
        return 0
    fi
    say "$name: started (limit ${limit}s)"
    t0=$(date +%s.%N)
    timeout -k 5 "$limit" "$@" >"$WORK/$name.log" 2>&1
    rc=$?
    t1=$(date +%s.%N)
    printf '{"rc": %d, "wall_s": %s, "timeout_s": %d}\n' "$rc" \
        "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')" "$limit" \
        >"$WORK/$name.rc"
    {
        echo "===== stage $name: exit $rc (limit ${limit}s): $*"
        cat "$WORK/$name.log"
        echo
    } >>"$OUT/gpu_check.log"
    say "$name: exit $rc"
    summary >/dev/null
}

say "mode $MODE, budget ${BUDGET}s, stages $STAGES, python $PY, out $OUT, work $WORK"

# --- info (and the wheels a bare device image lacks) ---------------------------------------------
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader \
        >"$WORK/nvidia_smi.csv" 2>/dev/null || rm -f "$WORK/nvidia_smi.csv"
fi
if [ -z "$WHEELS" ] && [ -d "$ROOT/.whl" ]; then WHEELS=$ROOT/.whl; fi
if [ -n "$WHEELS" ] && ! "$PY" -c "import envs, metajax.pipelines.mesa, metajax.pipelines.mra_compare" \
        >/dev/null 2>&1; then
    say "installing the wheels of $WHEELS into $WORK/site"
    if "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target "$WORK/site" "$WHEELS"/*.whl >>"$OUT/gpu_check.log" 2>&1; then
        export PYTHONPATH="$PYTHONPATH:$WORK/site"
    else
        say "wheel install failed (see gpu_check.log)"
    fi
fi
run_stage info "$PY" benchmarks/_gpu_check.py info --out "$WORK/info.json"

# --- throughput ---------------------------------------------------------------------------------
run_stage env "$PY" benchmarks/env_throughput.py --envs spread,treasure \
    --batches "$ENV_BATCHES" "${ENV_ARGS[@]}" --no-peers --no-write --json "$OUT/env.json"
run_stage train "$PY" benchmarks/train_throughput.py --seeds "$TRAIN_SEEDS" "${TRAIN_ARGS[@]}" \
    --no-peer --no-spread --no-write --json "$OUT/train.json"

# --- paper-preset probes ------------------------------------------------------------------------
run_stage mesa "$PY" benchmarks/_gpu_check.py probe mesa --mode "$MODE" \
    --chunks "$MESA_CHUNKS" --work "$WORK"
run_stage mra "$PY" benchmarks/_gpu_check.py probe mra --mode "$MODE" \
    --chunks "$MRA_CHUNKS" --work "$WORK"

# --- sweep: 16 grid points x seeds in one compiled program ----------------------------------------
run_stage sweep "$PY" -m metajax.cli sweep experiments/maddpg_climb.py \
    --grid maddpg.actor_lr=3e-4,1e-3,3e-3,1e-2 --grid maddpg.tau=0.005,0.01,0.05,0.1 \
    "${SWEEP_ARGS[@]}" --out "$WORK/sweep_run" --wandb disabled --no-progress

summary --final --print
rc=$?
say "wrote $OUT/gpu_check.json"
exit $rc
