#!/bin/sh
# make_benchmark.sh: regenerates docs/benchmark.md, the table of every method of the CAM,
# perturbation and gradient families on every zoo action model's held-out clips (localisation,
# faithfulness, time per clip) and the sanity checks, with one command:
#
#     tools/make_benchmark.sh [--stx build/stx] [--work build/benchmark] [--clips 8]
#                             [--fast-clips 4] [--curve-steps 20] [--sanity-clips 2]
#                             [--out docs/benchmark.md] [--models a,b] [--sanity-models a,b]
#                             [--groups full,occlusion,noisy,sampled,sanity] [--no-table]
#
# Every number comes from `stx evaluate MODEL --dataset LIST` (cli/evaluate_dataset.c) run on the
# clips of models/zoo/action_test.npz; tools/benchmark_table.py writes the document. The slow
# methods run with smaller budgets on --fast-clips clips (the notes column says which). It runs
# `nice -n 10` and takes about an hour on 2 cores.
set -eu
COMMAND="tools/make_benchmark.sh $*"
cd "$(dirname "$0")/.."
STX=build/stx
WORK=build/benchmark
CLIPS=8
FAST=4
STEPS=20
SCLIPS=2
OUT=docs/benchmark.md
MODELS=action_r3d,action_r2plus1d,action_cnn_lstm,action_cnn_lstm_attn,action_timesformer
SMODELS=$MODELS
GROUPS=full,occlusion,noisy,sampled,sanity
TABLE=1
while [ $# -gt 0 ]; do
    case "$1" in
    --stx) STX=$2; shift 2 ;;
    --work) WORK=$2; shift 2 ;;
    --clips) CLIPS=$2; shift 2 ;;
    --fast-clips) FAST=$2; shift 2 ;;
    --curve-steps) STEPS=$2; shift 2 ;;
    --sanity-clips) SCLIPS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --models) MODELS=$2; shift 2 ;;
    --sanity-models) SMODELS=$2; shift 2 ;;
    --groups) GROUPS=$2; shift 2 ;;
    --no-table) TABLE=0; shift ;;
    *) echo "make_benchmark.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
[ -x "$STX" ] || { echo "make_benchmark.sh: $STX not found: build stx first (cmake)" >&2; exit 1; }
mkdir -p "$WORK/ds"
/usr/bin/python3 - "$WORK/ds" <<'EOF'
import sys
import numpy as np
out = sys.argv[1]
d = np.load('models/zoo/action_test.npz')
with open(out + '/list.csv', 'w') as f:
    f.write('clip,mask,events,label\n')
    for i in range(len(d['label'])):
        for key, name in (('video', 'clip'), ('mask', 'mask'), ('event', 'events')):
            np.save('%s/%s%d.npy' % (out, name, i), d[key][i])
        f.write('clip%d.npy,mask%d.npy,events%d.npy,%d\n' % (i, i, i, d['label'][i]))
EOF
METRICS=deletion,insertion,pointing,energy,iou,temporal
FULL=cam,gradcam,gradcam-frame,gradcam++,xgradcam,layercam,hirescam,scorecam,eigencam,ablationcam,frame-occlusion,spatial-occlusion,saliency,gradxinput,ig,smoothgrad,smoothgrad-sq,vargrad,guided-backprop,deconvnet,guided-gradcam,swag,intensity,random
NOISY=smooth-gradcam++,sscam,iscam
SAMPLED=rise,kernelshap,lime,loco,up,aosa,extremal
SANITY=gradcam,gradcam++,saliency,gradxinput,guided-backprop,guided-gradcam,frame-occlusion,intensity,random

run() { # model run-name settings-note stx-flags...
    model=$1; name=$2; note=$3; shift 3
    case ",$GROUPS," in *",$name,"*) ;; *) return 0 ;; esac
    dir="$WORK/$model/$name"
    mkdir -p "$dir"
    echo "== $model $name"
    nice -n 10 "$STX" evaluate "models/zoo/$model.onnx" --dataset "$WORK/ds/list.csv" \
        --metric "$METRICS" --curve-steps "$STEPS" --out-dir "$dir" "$@"
    printf '%s\n' "$note" > "$dir/settings.txt"
}

{
    echo "$("$STX" --version 2>/dev/null | head -1 || true), $(date -u "+%Y-%m-%d"),"
    echo "$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'));"
    echo "deletion/insertion in $STEPS steps; one run of \`$COMMAND\`"
} > "$WORK/info.txt"
for model in $(echo "$MODELS" | tr ',' ' '); do
    run "$model" full "" --clips "$CLIPS" --methods "$FULL"
    run "$model" occlusion "window 4x16x16, stride 4x8x8" --clips "$CLIPS" \
        --methods occlusion --window 4,16,16 --stride 4,8,8
    run "$model" noisy "4 noisy copies" --clips "$FAST" --methods "$NOISY" --samples 4
    run "$model" sampled "500 masks / 256 samples / 50 steps" --clips "$FAST" \
        --methods "$SAMPLED" --masks 500 --samples 256 --explain-steps 50
    case ",$SMODELS," in
    *",$model,"*)
        run "$model" sanity "cascading randomisation of every layer" --clips "$SCLIPS" \
            --methods "$SANITY" --randomize --random-label --metric sparsity ;;
    esac
done
[ "$TABLE" = 0 ] || /usr/bin/python3 tools/benchmark_table.py "$WORK" "$OUT"
