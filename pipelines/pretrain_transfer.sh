#!/usr/bin/env bash
# Does pretraining help? Pretrain a model, then fine-tune it and prompt it in context on GUE tasks, with
# the same recipes as the from-scratch runs (pipelines/finetune_gue.py) so the two can be compared.
#
#   GUE=path/to/GUE OUT=runs/transfer TASKS="prom/prom_300_tata tf/0" bash pipelines/pretrain_transfer.sh
#
# Env: GUE (task root), OUT (results), TASKS (group/task names), PRETRAIN_RECIPE (default
# hyenadna-demo-gpu), PRETRAINED (skip pretraining and use this checkpoint), ICL_TASKS (tasks for
# `genomix icl`: k-shot with ICL_SHOTS per class, default 1, and the soft-prompt recipe; default none),
# FINETUNE_RECIPE (default gue); PRETRAIN_ARGS / FINETUNE_ARGS / ICL_ARGS (both ICL recipes) /
# SOFT_PROMPT_ARGS are passed on (quick checks: "--max-steps 5", "--train-rows 200", "--test-rows 20",
# "--steps 3"). Every step resumes or skips finished work.
set -euo pipefail
case "${1:-}" in -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;; esac
: "${GUE:?set GUE to the GUE root}" "${OUT:?set OUT}" "${TASKS:?set TASKS}"
PRETRAIN_RECIPE=${PRETRAIN_RECIPE:-hyenadna-demo-gpu}
FINETUNE_RECIPE=${FINETUNE_RECIPE:-gue}
ICL_TASKS=${ICL_TASKS:-}
mkdir -p "$OUT"
if [ -z "${PRETRAINED:-}" ]; then
  PRETRAINED="$OUT/pretrain/model"
  if [ ! -f "$PRETRAINED/config.json" ]; then
    # shellcheck disable=SC2086
    python -m genomix pretrain --recipe "$PRETRAIN_RECIPE" --out "$OUT/pretrain" --resume auto --quiet ${PRETRAIN_ARGS:-}
  fi
fi
failed=0
# a failed fine-tuning task makes finetune_gue.py exit 1 after the others ran: go on to ICL and exit 1 at the
# end; any other status (2: bad arguments) stops here
# shellcheck disable=SC2086
python pipelines/finetune_gue.py --model "$PRETRAINED" --gue "$GUE" --tasks $TASKS --recipe "$FINETUNE_RECIPE" \
  --out "$OUT/finetune" ${FINETUNE_ARGS:-} || { rc=$?; [ "$rc" -eq 1 ] || exit "$rc"; failed=1; }
for task in $ICL_TASKS; do
  name=${task//\//_}
  for recipe in kshot soft-prompt; do
    dest="$OUT/icl/$recipe/$name"
    [ -f "$dest/metrics.json" ] && continue
    extra=(--shots "${ICL_SHOTS:-1}"); [ "$recipe" = soft-prompt ] && read -ra extra <<< "${SOFT_PROMPT_ARGS:-}"
    # a failed task is reported and the others still run, as in finetune_gue.py; the script then exits 1
    if ! python -m genomix icl --model "$PRETRAINED" --task "$GUE/$task" --recipe "$recipe" "${extra[@]}" \
        --out "$dest" --resume --quiet ${ICL_ARGS:-} > /dev/null; then
      echo "$task $recipe: icl failed (its error is above)" >&2
      failed=1
      continue
    fi
    python -c "import json,sys; m=json.load(open(sys.argv[1]))['metrics']['test']; print(sys.argv[2], sys.argv[3], 'test MCC %.3f acc %.3f' % (m['mcc'], m['accuracy']))" \
      "$dest/metrics.json" "$task" "$recipe"
  done
done
exit "$failed"
