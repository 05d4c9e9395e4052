#!/bin/sh
# Explain every image in $1 against $REX_BACKEND, into the Zarr store $2/explanations.zarr
# plus a heatmap and a JSON summary per image. Re-running resumes: finished iterations kept in
# the store are not recomputed, so a run cut short (server restart, container killed) continues.
set -eu
images=${1:?usage: explain-dir IMAGES_DIR RESULTS_DIR}
results=${2:?usage: explain-dir IMAGES_DIR RESULTS_DIR}
store="$results/explanations.zarr"
mkdir -p "$results"

options=""
for option in ${REX_BACKEND_OPTIONS:-}; do
    options="$options --backend-option $option"
done

found=0
for image in "$images"/*; do
    case "$image" in
        *.jpg|*.jpeg|*.png|*.JPG|*.JPEG|*.PNG) ;;
        *) continue ;;
    esac
    found=1
    name=$(basename "$image")
    resume=""
    [ -d "$store" ] && resume="--resume"
    echo "explaining $name" >&2
    # shellcheck disable=SC2086  # options and REX_ARGS are word lists on purpose
    rex-stream "$image" --backend "$REX_BACKEND" $options ${REX_ARGS:-} \
        --store "$store" $resume --heatmap "$results/$name.heatmap.png" --json --quiet \
        > "$results/$name.json"
done
[ "$found" = 1 ] || { echo "no .jpg/.png images in $images" >&2; exit 1; }
echo "done: $store" >&2
