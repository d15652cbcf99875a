#!/usr/bin/env bash
# The dense demo, the ImageNet-to-COCO flow in miniature: sets up (or refreshes) .venv, writes the digit scenes to
# data/digit_scenes (tools/demo/prepare_digit_scenes.py: 1000 training scenes, 100 held out), takes the digits
# classifier of tools/demo/train_digits.sh as the pretrained backbone (trains it first if no run left one), then
# trains and validates on the held-out scenes: det, RetinaNet (retinanet_dynamixer-tiny_fpn_digit-scenes.py);
# seg, Semantic FPN (fpn_dynamixer-tiny_digit-scenes.py); all, both. mask-rcnn or upernet names the other two configs.
# Each run ends with its best held-out figure and when it was reached, the checkpoint, the command that runs
# det_demo.py / seg_demo.py with it, its training curves and a held-out scene drawn with the predictions,
# all in work_dirs/<config>/. Extra args go to tools/train.py (e.g. --cfg-options model.backbone.init_cfg=None).
set -euo pipefail
usage="usage: bash tools/demo/train_digit_scenes.sh [det|seg|all|retinanet|mask-rcnn|fpn|upernet] [TRAIN_ARGS ...]"
case "${1:-all}" in
    -h | --help)
        echo "$usage"
        echo "Sets up .venv, writes data/digit_scenes, trains detectors / segmentors from the digits classifier and"
        echo "summarizes each run; TRAIN_ARGS go to tools/train.py (e.g. --cfg-options KEY=VALUE)."
        exit 0 ;;
    det) runs=(retinanet) ;;
    seg) runs=(fpn) ;;
    all) runs=(retinanet fpn) ;;
    retinanet | mask-rcnn | fpn | upernet) runs=("$1") ;;
    *) echo "$usage" >&2; echo "unknown task ${1:-}" >&2; exit 2 ;;
esac
(( $# )) && shift
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bash "$ROOT/tools/setup_env.sh"
cd "$ROOT"
PYTHON="$ROOT/.venv/bin/python"
if [[ ! -d data/digit_scenes ]]; then  # the writer renames it into place only when complete
    "$PYTHON" tools/demo/prepare_digit_scenes.py data/digit_scenes
fi
# The demo's schedules and figures are for the writer's default, 1000 training scenes.
scenes="$("$PYTHON" -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["images"]))' \
    data/digit_scenes/annotations/instances_train.json)"
if [[ "$scenes" != 1000 ]]; then
    echo "warning: data/digit_scenes holds $scenes training scenes, the demo is set for 1000: delete the folder" \
        "to have it rewritten" >&2
fi

# The backbone's "ImageNet": the digits classifier, as the dense configs' init_cfg expects it.
PRETRAINED=checkpoints/dynamixer-tiny_digits.pth
if [[ ! -f "$PRETRAINED" ]]; then
    classifier=work_dirs/dynamixer-tiny_2xb64_digits
    if ! ls "$classifier"/best_accuracy_top1_epoch_*.pth >/dev/null 2>&1; then
        bash tools/demo/train_digits.sh --work-dir "$classifier"
    fi
    best="$(ls "$classifier"/best_accuracy_top1_epoch_*.pth | sort -V | tail -1)"
    mkdir -p checkpoints
    cp "$best" "$PRETRAINED.partial"
    mv "$PRETRAINED.partial" "$PRETRAINED"
    echo "pretrained backbone: $PRETRAINED (from $best)"
fi

scene=data/digit_scenes/images/val/000001.png
for run in "${runs[@]}"; do
    case "$run" in
        retinanet) config=retinanet_dynamixer-tiny_fpn_digit-scenes.py metric=coco/bbox_mAP demo=det_demo.py ;;
        mask-rcnn) config=mask-rcnn_dynamixer-tiny_fpn_digit-scenes.py metric=coco/segm_mAP demo=det_demo.py ;;
        fpn) config=fpn_dynamixer-tiny_digit-scenes.py metric=mIoU demo=seg_demo.py ;;
        upernet) config=upernet_dynamixer-tiny_digit-scenes.py metric=mIoU demo=seg_demo.py ;;
    esac
    # The detections drawn: those scoring above 0.5 (a scene of 84-168 px holds few boxes legibly).
    draw=()
    if [[ "$demo" == det_demo.py ]]; then draw=(--score-thr 0.5); fi
    config="configs/dynamixer/$config"
    work_dir="work_dirs/$(basename "$config" .py)"
    start=$SECONDS
    # One process, both cores to its torch threads.
    OMP_NUM_THREADS=2 "$PYTHON" tools/train.py "$config" --work-dir "$work_dir" "$@"
    echo
    echo "== $run: trained and validated in $((SECONDS - start)) s"
    summary="$("$PYTHON" tools/demo/summarize_run.py "$work_dir" "$config" --metric "$metric" --image "$scene")"
    echo "$summary"
    checkpoint="$(sed -n 's/^Checkpoint: //p' <<< "$summary")"
    "$PYTHON" "tools/demo/$demo" "$scene" "$config" "$checkpoint" --out-file "$work_dir/held_out_scene.png" \
        --device cpu "${draw[@]}"
done
