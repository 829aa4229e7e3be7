#!/usr/bin/env bash
# One lent GPU, one short session: every run that needs a GPU, side by side on it, within a
# fixed wall-clock budget, then the evaluations. This is the script behind the README's
# GPU-trained figures (Results); it ran once, on an NVIDIA H200 lent for 15 minutes, in an
# earlier form whose run names results/gpu/README.md maps to these.
#
#   bash benchmarks/gpu_session.sh OUT_DIR [TRAIN_SECONDS [EVAL_SECONDS]]
#
# DEVICE=cpu EXTRA="data.train_limit=300 train.epochs=1" runs the same steps small on a CPU, to
# try the script before a GPU is spent on it.
#
# Runs (all on the one GPU, one CPU thread each; MPS shares the GPU between them when the
# machine has it):
#   - the CUDA checks of issue 12: benchmarks/cuda_check.py, and a one-process torchrun run
#     (NCCL and DDP);
#   - the reversal experiment: configs/tutorial.yaml, seeds 1-3, reversed and not;
#   - configs/sutskever_best.yaml, and at the paper's 4 x 1000 (two seeds, and with BPE);
#     configs/transformer.yaml for up to 40 epochs, and with a joint BPE vocabulary;
#     configs/transformer_wide.yaml; configs/attention.yaml.
# Training runs are stopped with SIGTERM at TRAIN_SECONDS (their best/ stays), then evaluated
# on test2016 and test2017 until EVAL_SECONDS have passed. Every figure lands in OUT_DIR/results,
# and nothing else does: the commands' logs go to OUT_DIR/logs, the checkpoints stay behind
# (in $RUNS_DIR).
# Needs: the Multi30k files in $SEQ2SEQ_DATA, the project on PYTHONPATH (or installed).
set -uo pipefail
out=$(realpath "$1")
train_seconds=${2:-330}
eval_seconds=${3:-150}
device=${DEVICE:-cuda}
results=$out/results logs=$out/logs
mkdir -p "$results" "$logs"
runs=${RUNS_DIR:-/tmp/gpu-runs}
mkdir -p "$runs"
export OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
s2s() { "$py" -m seq2seq "$@"; }
started=$(date +%s)
stamp() { echo "[$(($(date +%s) - started))s] $*"; }

stamp "machine: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null)"
"$py" -c "import torch, spacy, sacrebleu, sentencepiece; print('torch', torch.__version__, \
'cuda', torch.cuda.is_available(), 'spacy', spacy.__version__); spacy.blank('de')" || exit 3

# MPS lets the runs' small kernels share the GPU at once instead of taking turns.
if [ "${USE_MPS:-1}" = 1 ] && command -v nvidia-cuda-mps-control >/dev/null; then
    export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps-pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps-log
    mkdir -p $CUDA_MPS_PIPE_DIRECTORY $CUDA_MPS_LOG_DIRECTORY
    if nvidia-cuda-mps-control -d && timeout 60 "$py" -c \
        "import torch; assert torch.ones(2, device='cuda').sum().item() == 2"; then
        stamp "MPS on"
    else
        echo quit | nvidia-cuda-mps-control 2>/dev/null
        unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
        stamp "MPS off: it did not start"
    fi
fi

# shellcheck disable=SC2206
common=(output_dir="$runs" device="$device" train.num_threads=1)
declare -A configs overrides
add() { configs[$1]=$2; overrides[$1]="${*:3}"; }
for seed in 1 2 3; do
    add "rev-s$seed" configs/tutorial.yaml seed=$seed data.reverse_source=true
    add "fwd-s$seed" configs/tutorial.yaml seed=$seed data.reverse_source=false
done
bpe="data.tokenizer=sentencepiece data.joint_vocab=true data.vocab_size=8000 data.sp_model_type=bpe"
big="model.num_layers=4 model.hidden_size=1000"  # the paper's size
add sb configs/sutskever_best.yaml
add sb-4x1000 configs/sutskever_best.yaml $big
add sb-4x1000-s2 configs/sutskever_best.yaml $big seed=2
add sb-4x1000-bpe configs/sutskever_best.yaml $big $bpe
add tf configs/transformer.yaml train.epochs=40 train.patience=10 train.keep_checkpoints=5
add tf-bpe configs/transformer.yaml train.epochs=40 train.patience=10 train.keep_checkpoints=5 \
    model.share_embeddings=true $bpe
add tf-wide configs/transformer_wide.yaml
add att configs/attention.yaml train.epochs=30 train.patience=8 train.keep_checkpoints=5

for name in "${!configs[@]}"; do
    # shellcheck disable=SC2086
    timeout -s TERM -k 60 "$train_seconds" "$py" -m seq2seq train "${configs[$name]}" \
        name="$name" "${common[@]}" ${overrides[$name]} ${EXTRA:-} >"$logs/$name.train.log" 2>&1 &
done
stamp "started ${#configs[@]} training runs for at most ${train_seconds}s"

# The CUDA checks, beside the runs (so their tokens per second are not speed figures).
precisions=(bfloat16 float16 float32)
[ "$device" = cpu ] && precisions=(float32)
timeout 240 "$py" benchmarks/cuda_check.py --configs configs/tutorial.yaml --steps 150 \
    --device "$device" --precisions "${precisions[@]}" >"$results/cuda_check.jsonl" \
    2>"$logs/cuda_check.err"
stamp "cuda_check exit $?"
timeout 180 "$py" -m torch.distributed.run --nproc-per-node 1 -m seq2seq train configs/tiny.yaml \
    device="$device" \
    output_dir="$runs" name=torchrun1 >"$results/torchrun1.txt" 2>&1
stamp "torchrun (1 process, NCCL) exit $?"
timeout 60 "$py" -m torch.distributed.run --nproc-per-node 2 -m seq2seq train configs/tiny.yaml \
    device="$device" \
    output_dir="$runs" name=torchrun2 >"$results/torchrun2.txt" 2>&1
stamp "torchrun (2 processes, 1 GPU) exit $? (one line expected)"
wait
stamp "training done"
nvidia-smi --query-gpu=memory.used --format=csv >"$results/nvidia-smi.txt" 2>&1

evaluate() {  # RUN SPLIT BEAM [extra] -> results/RUN.SPLIT.bBEAM.json
    local run=$1 split=$2 beam=$3 tag=$1
    shift 3
    [ $# -gt 0 ] && tag=$tag-ens
    timeout 150 "$py" -m seq2seq evaluate "$runs/$run" --split "$split" --beam-size "$beam" \
        --json --device "$device" "$@" >"$results/$tag.$split.b$beam.json" \
        2>"$logs/$tag.$split.b$beam.err"
}
average() {  # RUN: its last (up to 5) kept epochs into RUN/averaged, beam 5 on both test sets
    local kept
    kept=$(find "$runs/$1" -maxdepth 1 -name 'epoch-*' | wc -l)
    [ "$kept" -ge 2 ] || return
    s2s average "$runs/$1" --last $((kept < 5 ? kept : 5)) --output "$runs/$1/averaged" \
        >"$results/$1.average.txt" 2>&1 &&
        for split in test test_2017_flickr; do evaluate "$1/averaged" "$split" 5; done
}
for name in "${!configs[@]}"; do mkdir -p "$results/$name"; done
for seed in 1 2 3; do
    (
        for dir in rev fwd; do evaluate "$dir-s$seed" test 1; done
        timeout 200 "$py" -m seq2seq compare "$runs/rev-s$seed" "$runs/fwd-s$seed" --split test \
            --json --device "$device" >"$results/compare-s$seed.json" 2>"$logs/compare-s$seed.err"
    ) &
done
for name in sb sb-4x1000 sb-4x1000-s2 sb-4x1000-bpe tf tf-bpe tf-wide att; do
    (
        evaluate "$name" test 5
        evaluate "$name" test 1
        evaluate "$name" test_2017_flickr 5
        average "$name"
    ) &
done
(evaluate sb-4x1000 test 5 --ensemble "$runs/sb-4x1000-s2" &&
    evaluate sb-4x1000 test_2017_flickr 5 --ensemble "$runs/sb-4x1000-s2") &
pictures() {  # the paper's Figure 2 for a tutorial model; every run's learning curves
    local plotted=() name
    s2s sentence-map "$runs/rev-s1" --output "$results/figure2-rev-s1.png" \
        >"$results/figure2.txt" 2>&1
    for name in "${!configs[@]}"; do
        if [ -f "$runs/$name/log.jsonl" ]; then plotted+=("$runs/$name"); fi
    done
    s2s plot "${plotted[@]}" --output "$results/curves.png" >"$results/plot.txt" 2>&1
}
pictures &
for _ in $(seq "$eval_seconds"); do
    [ -z "$(jobs -rp)" ] && break
    sleep 1
done
# Whatever is still decoding is cut off: its figures are missing from results/, not wrong.
pkill -TERM -P $$ 2>/dev/null
pkill -TERM -f "seq2seq (evaluate|compare|average|plot|sentence-map)" 2>/dev/null
stamp "evaluation done"
for name in "${!configs[@]}"; do
    [ -f "$runs/$name/log.jsonl" ] && cp "$runs/$name/log.jsonl" "$results/$name.log.jsonl"
    [ -f "$runs/$name/config.yaml" ] && cp "$runs/$name/config.yaml" "$results/$name.config.yaml"
done
rmdir "$results"/*/ 2>/dev/null
stamp "done"
